"""`python -m tests.provider_schema [FOLDER]`: check FOLDER (default terraform/) against the
google provider's schema; one line per finding, exit status 1 if there is any."""

import sys
from pathlib import Path

from tests.provider_schema.check import check_folder, load_schema

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "terraform")
try:
    schema = load_schema()
except FileNotFoundError as missing:
    sys.exit(f"phonesync: {missing}")
findings = check_folder(folder, schema)
for finding in findings:
    print(finding)
if findings:
    sys.exit(1)
print(f"phonesync: {folder}: every resource, data source and block fits the google provider schema")
