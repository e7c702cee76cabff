# This agent has no agent.nix in the desired state: nothing to add.
{ ... }:
{ }
