//! Who this node is: identity from the Hetzner metadata service, a NoCloud-style directory or file, or the environment.
