"""`python -m caracal.rego <fd> <workdir>`: one Rego worker process (see caracal.rego.worker)."""

import sys
from multiprocessing.connection import Connection

from caracal.rego.worker import serve

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])), sys.argv[2])
