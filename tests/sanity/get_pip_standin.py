"""Stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test runs this file as __main__ in a fresh virtual environment with
pip-install arguments (packages to install plus get-pip's own
--no-setuptools/--no-wheel flags). It bootstraps pip from the interpreter's
own ensurepip and installs the requested packages from the package index with
the system CA bundle, since ansible-test trims the environment that would
otherwise carry the certificate settings.
"""

import ensurepip
import os
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

ensurepip.bootstrap(upgrade=True)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
command = [sys.executable, "-m", "pip", "install"]
if os.path.exists(CA_BUNDLE):
    command += ["--cert", CA_BUNDLE]
sys.exit(subprocess.call(command + args))
