require "./crystal_backend"

exit CrystalBackend.main
