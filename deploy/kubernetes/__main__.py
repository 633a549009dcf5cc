import sys

from deploy.kubernetes.generate import main

sys.exit(main())
