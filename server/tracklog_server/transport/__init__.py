"""Transport: the gRPC service and the HTTP endpoint. They translate and validate messages, then call the
application layer; they decide nothing themselves."""
