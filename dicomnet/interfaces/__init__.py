"""The interfaces an application implements for :class:`dicomnet.Server`."""
from .handlers import AssociationInfo, Handler, ServiceContext

__all__ = ["Handler", "ServiceContext", "AssociationInfo"]
