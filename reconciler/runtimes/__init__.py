"""Runtime backends: process (bwrap), nspawn, nixos-container."""
