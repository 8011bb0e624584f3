"""One module per federated algorithm; ``fedmetamal.fl.registry`` lists them."""
