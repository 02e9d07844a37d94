"""A child process for test_ingest_worker_killed: `python -m tests.e2e.ingest_child
accept N | ingest-and-hang | ingest | rows`, with the control plane's environment."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    import django

    django.setup()
    from monitoring import ingest
    from monitoring.models import EdgeWindow

    mode = sys.argv[1]
    if mode == "accept":
        for r in range(int(sys.argv[2])):
            windows = [{"source": f"caller-{r}", "destination": "payments",
                        "window_end": time.time(), "seconds": 10.0, "requests": 10 * r + k,
                        "errors": 0, "buckets": [0, r, k]} for k in range(3)]
            ingest.metrics_accept(node=f"host-{r}", windows=windows)
    elif mode == "ingest-and-hang":
        real = EdgeWindow.objects.bulk_create
        batches = {"n": 0}

        def hang_in_the_second_batch(rows: list[Any], **kwargs: Any) -> list[Any]:
            written = real(rows, **kwargs)
            batches["n"] += 1
            if batches["n"] == 2:  # written, inside the transaction, not committed
                print("hanging", flush=True)
                time.sleep(600)
            return written

        EdgeWindow.objects.bulk_create = hang_in_the_second_batch  # type: ignore[method-assign]
        ingest.metrics_ingest(consumer="worker-a", batch=4)
    elif mode == "ingest":
        print(ingest.metrics_ingest(consumer="worker-b", claim_idle_ms=0))
    elif mode == "rows":
        rows = sorted(EdgeWindow.objects.values_list("node", "source", "requests"))
        print(json.dumps({"rows": rows, "backlog": ingest.metrics_backlog()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
