//! End-to-end test support: spawning real `allidbd` processes (arrives with the daemon).
