from tests.emulators import emulators, gcp_project

__all__ = ["emulators", "gcp_project"]
