# The flake's NixOS VM test: a host with the three lines of the docs boots,
# hive-broker and hive-c0re come up, the dashboard listens on :7000 and hm1nd
# is created in applied. Building hm1nd's container inside the VM needs
# nixpkgs' source, which the VM has no network to fetch: the test checks that
# c0re created and reconciles hm1nd, not that its container runs.
{ self }:
{
  name = "hyperhive-host";

  nodes.host =
    { ... }:
    {
      imports = [ self.nixosModules.hive-c0re ];
      services.hive-c0re.enable = true;
      virtualisation.memorySize = 2048;
      system.stateVersion = "25.05";
    };

  testScript = ''
    host.wait_for_unit("hive-broker.service")
    host.wait_for_unit("hive-c0re.service")
    host.wait_for_file("/run/hyperhive/host.sock")
    host.wait_for_open_port(7000)
    host.succeed("test -d /var/lib/hyperhive/applied/.git || test -f /var/lib/hyperhive/applied/HEAD")
    host.wait_until_succeeds("hive-c0re --run-dir /run/hyperhive status --json | grep -q hm1nd", timeout=120)
    host.succeed("test -f /var/lib/hyperhive/flakes/hm1nd/spec.json")
    # A restart of hive-c0re keeps the socket dirs the containers bind.
    host.succeed("systemctl restart hive-c0re.service")
    host.wait_for_file("/run/hyperhive/host.sock")
    host.succeed("test -d /run/hyperhive/manager")
  '';
}
