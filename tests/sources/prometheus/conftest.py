from tests.support.prometheus_server import prometheus_factory

__all__ = ["prometheus_factory"]
