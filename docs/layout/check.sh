#!/usr/bin/env bash
# Reads every page of a built site in headless Chromium at 1280 px and
# prints, per page, the page's width against the window's, how many boxes
# (code, tables, notebook outputs) scroll inside themselves, and anything
# that reaches past the content column (which would be cut off).
#
#   mkdocs build -f docs/mkdocs.yml --site-dir SITE && docs/layout/check.sh SITE
#
# Needs `chromium` on the PATH; not part of CI, which has no browser.
set -euo pipefail
site=$(cd "$1" && pwd)
script="$(cd "$(dirname "$0")" && pwd)/measure.js"
status=0
while IFS= read -r page; do
    copy=$(mktemp --suffix=.html -p "$(dirname "$page")")
    sed "s#</body>#<script src=\"file://$script\"></script></body>#" \
        "$page" > "$copy"
    result=$(chromium --headless --no-sandbox --disable-gpu \
        --allow-file-access-from-files --no-first-run \
        --user-data-dir="$(mktemp -d)" --window-size=1280,1000 \
        --virtual-time-budget=3000 --dump-dom "file://$copy" 2> /dev/null |
        grep -o 'data-measure="[^"]*"' || echo 'data-measure="not measured"')
    rm -f "$copy"
    result=${result#data-measure=}
    echo "${page#"$site"/}: $result"
    case $result in *"px): 0"*) ;; *) status=1 ;; esac
done < <(find "$site" -name index.html | sort)
exit "$status"
