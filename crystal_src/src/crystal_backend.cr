require "http/client"
require "http/server"
require "json"
require "log"
require "log/json"

# ecsdemo-crystal backend, canary build. Requiring this file only defines the
# service; `server.cr` starts it.
module CrystalBackend
  VERSION = "0.1.0"

  # Embedded at compile time so the binary reports it wherever it runs.
  CODE_HASH = {{ read_file("#{__DIR__}/../code_hash.txt").strip }}
end

require "./crystal_backend/config"
require "./crystal_backend/availability_zone"
require "./crystal_backend/logging"
require "./crystal_backend/app"
require "./crystal_backend/service"
