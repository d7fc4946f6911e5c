from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "apps.streaming"
    label = "streaming"
    verbose_name = "Streaming"

    def ready(self) -> None:
        # The pipeline and alerts sit below this app; they publish through the port.
        from apps.ops import fanout
        from apps.streaming.publisher import publisher

        fanout.install(publisher)
