"""``python -m fairspeech.demo``: build the demo corpus (see fairspeech.demo.build.main)."""

import sys

from fairspeech.demo.build import main

if __name__ == "__main__":
    sys.exit(main())
