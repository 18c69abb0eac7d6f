# Baseline for bench/crystal_bench.py: the smallest useful Crystal HTTP server,
# no routing and no logging. Our backend is compared against this.
require "http/server"

server = HTTP::Server.new do |context|
  context.response.content_type = "text/plain"
  context.response.print "Hello, World!"
end
server.bind_tcp("127.0.0.1", (ENV["PORT"]? || "3000").to_i)
server.listen
