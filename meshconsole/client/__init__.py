"""The Python SDK: register, discover, balance and call through the mesh (docs/sdk.md).

Imports no Django: only the stdlib and the agent runtime (agents.runtime), whose
balancers, endpoint selection and policy parsing it reuses.
"""

from meshconsole.client.balancing import FaultTolerance, LoadBalancer, NoEndpoint
from meshconsole.client.http import MeshError, MeshHTTPError, MeshUnavailable
from meshconsole.client.mesh import AsyncServiceMesh, ServiceMesh
from meshconsole.client.model import Discovery, Service, ServiceEndpoint
from meshconsole.client.registration import Registration

__all__ = ["AsyncServiceMesh", "Discovery", "FaultTolerance", "LoadBalancer", "MeshError",
           "MeshHTTPError", "MeshUnavailable", "NoEndpoint", "Registration", "Service",
           "ServiceEndpoint", "ServiceMesh"]
