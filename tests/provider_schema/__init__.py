"""The google provider's schema (resources, data sources, provider), from the npm packages cdktf
generated from it (see extract.py), and a check of terraform/ against it (see check.py)."""
