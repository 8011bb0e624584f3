"""The web dashboard's server side: the Connect services, browser sessions and static files
that ``fedmetamal serve`` answers on its web port."""
