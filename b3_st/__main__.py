"""``python -m b3_st``: the ``b3-st`` command line."""

from b3_st.cli import main

raise SystemExit(main())
