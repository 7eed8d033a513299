"""Talking to the Kubernetes API: credentials, one client, and list+watch caches.

Layered one way: ``ratelimit`` <- ``client`` <- ``config`` (credentials into an
``Endpoint``) and ``reflector`` (list+watch of one collection) <- ``cache`` (the
operator's in-memory view of its own Secrets and ConfigMaps). The operator's store, the
JWKS server's source and ``sign --kube`` all go through ``client``; nothing above this
package builds a URL to the API server by hand or loads credentials another way.
"""
