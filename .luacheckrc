std = "max"
max_line_length = 100
files["spec/"] = { std = "max+busted" }
files["bin/"] = { std = "max" }
exclude_files = { "build/" }
files["examples/openresty/"] = { std = "max+ngx_lua" }
