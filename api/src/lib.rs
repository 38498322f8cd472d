//! Public API layer (gRPC + HTTP gateway), see WIRE.md. Arrives with issue 4.
