from tests.sandbox_fixture import sandbox_web

__all__ = ["sandbox_web"]
