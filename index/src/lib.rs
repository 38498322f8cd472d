//! Node-local unified store: vector index, graph index, query executor (DESIGN.md §4).
