import sys

from keras_scaled_l2.cli import main

sys.exit(main())
