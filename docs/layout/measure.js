// Injected into a built page by check.sh: what overflows at this width.
window.addEventListener('load', () => {
  setTimeout(() => {
    const out = [];
    const doc = document.documentElement;
    out.push(`page width ${doc.scrollWidth} of ${window.innerWidth}`);
    const main = document.querySelector('.md-content');
    const right = main.getBoundingClientRect().right;
    let scrollers = 0;
    const past = [];
    for (const el of main.querySelectorAll('*')) {
      if (el.scrollWidth > el.clientWidth + 1 &&
          getComputedStyle(el).overflowX !== 'visible') {
        scrollers++;
      }
      // Inside a box that scrolls, a wide child is reachable, not cut off.
      let clipped = false;
      for (let up = el.parentElement; up && up !== main; up = up.parentElement) {
        if (getComputedStyle(up).overflowX !== 'visible') { clipped = true; break; }
      }
      const r = el.getBoundingClientRect();
      // Its box, or content spilling out of it, past the column's edge.
      const reach = r.left + Math.max(
        r.width,
        getComputedStyle(el).overflowX === 'visible' ? el.scrollWidth : 0);
      if (!clipped && r.width > 0 && reach > right + 2) {
        past.push(`${el.tagName.toLowerCase()} to ${Math.round(reach)} px`);
      }
    }
    out.push(`boxes that scroll inside themselves: ${scrollers}`);
    out.push(`past the column (${Math.round(right)} px): ${past.length}` +
             (past.length ? ` (${past.slice(0, 3).join(', ')})` : ''));
    document.body.setAttribute('data-measure', out.join(' | '));
  }, 300);
});
