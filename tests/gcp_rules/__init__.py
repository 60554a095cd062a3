"""Offline checks of what we ship to Google against Google's own rules and schemas.

Each module returns problems as strings (empty: nothing wrong), so a test asserts ``== []`` on
what we ship and names the one problem planted in a fixture under tests/fixtures/google_rules/.
"""
