"""``python -m fairspeech.data.demo``: build the demo corpus (see fairspeech.data.demo.build.main)."""

import sys

from fairspeech.data.demo.build import main

if __name__ == "__main__":
    sys.exit(main())
