"""Bulk-create a registry straight into the database, for speed (no workflows, no
events): `python -m bench.fleet_seed SERVICES INSTANCES [EDGES]`, run with the
control plane's environment. Services reg-00000.., tags t0..t19, instances spread
evenly, three in four passing; EDGES caller->callee edges between them, each with
six 10 s metrics windows in the last minute; prints the elapsed seconds."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta


def main() -> int:
    services, instances = int(sys.argv[1]), int(sys.argv[2])
    edges = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from monitoring.models import EdgeWindow
    from registry.models import Health, Instance, MeshRevision, Service

    t0 = time.monotonic()
    with transaction.atomic():
        rows = Service.objects.bulk_create(
            [Service(name=f"reg-{i:05d}", tags=[f"t{i % 20}", "bench"]) for i in range(services)],
            batch_size=2000,
        )
        batch: list[Instance] = []
        for k in range(instances):
            service = rows[k % services]
            batch.append(Instance(
                service=service, address=f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}",
                port=8080, zone=f"zone-{k % 3}", tags=[f"v{k % 2}"],
                health=Health.PASSING if k % 4 else Health.CRITICAL,
                status_reason="seeded",
            ))
            if len(batch) >= 5000:
                Instance.objects.bulk_create(batch, batch_size=5000)
                batch = []
        Instance.objects.bulk_create(batch, batch_size=5000)
        now = timezone.now()
        windows = [
            EdgeWindow(window_end=now - timedelta(seconds=10 * w), seconds=10,
                       node=f"host-{e % 50}", source=rows[e % services].name,
                       destination=rows[(e * 7 + 1 + e // services) % services].name,
                       requests=100 + e % 50, errors=e % 3, latency_sum_ms=500.0,
                       buckets=[0, 5, 20, 40, 25, 8, 2])
            for e in range(edges) for w in range(6)
        ]
        EdgeWindow.objects.bulk_create(windows, batch_size=5000)
        MeshRevision.bump()
    print(f"{time.monotonic() - t0:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
