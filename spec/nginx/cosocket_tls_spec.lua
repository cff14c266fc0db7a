-- SPDX-License-Identifier: MIT
-- TLS over cosockets: the certificate chain is verified against nginx's
-- lua_ssl_trusted_certificate and the host name against the certificate; an untrusted or
-- wrongly named certificate is transport/tls, not retried, and says which directive to set.
-- The API servers are TLS server blocks of the same nginx, with certificates made here.
local H = require "spec.nginx.harness"
local cjson = require "cjson"

local NAME = "chatmaid.resty cosocket TLS #nginx"
if H.skip(NAME) then return end

local KEY = "sk_test_cosocket_tls_secret_00000042"

describe(NAME, function()
  local dir = os.tmpname()
  local ports = {}

  setup(function()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. H.shq(dir)))
    local function ssl(args) local out, ok = H.sh("cd " .. H.shq(dir) .. " && openssl " .. args)
      assert(ok, out) end
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    ssl("req -x509 " .. ec .. " -days 2 -keyout ca.key -out ca.pem -subj /CN=spec-ca")
    -- leaves signed by the CA: the right name, and another name
    for name, san in pairs{ good = "DNS:127.0.0.1,IP:127.0.0.1", wrong = "DNS:other.example" } do
      ssl("req " .. ec .. " -keyout " .. name .. ".key -out " .. name .. ".csr -subj /CN="
          .. name)
      H.write(dir .. "/" .. name .. ".ext", "subjectAltName=" .. san .. "\n")
      ssl("x509 -req -in " .. name .. ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
          .. " -extfile " .. name .. ".ext -out " .. name .. ".pem")
    end
    -- self-signed, with the right name, by no CA nginx trusts
    ssl("req -x509 " .. ec .. " -days 2 -keyout untrusted.key -out untrusted.pem -subj "
        .. "/CN=127.0.0.1 -addext subjectAltName=DNS:127.0.0.1,IP:127.0.0.1")
    for _, n in ipairs{ "good", "wrong", "untrusted" } do ports[n] = H.free_port() end
  end)

  local srv = H.serve(function()
    local blocks = { "lua_ssl_trusted_certificate " .. dir .. "/ca.pem;",
                     "lua_ssl_verify_depth 2;" }
    for _, n in ipairs{ "good", "wrong", "untrusted" } do
      blocks[#blocks + 1] = ("server { listen 127.0.0.1:%d ssl; ssl_certificate %s/%s.pem; "
        .. "ssl_certificate_key %s/%s.key; default_type application/json; location / { "
        .. "return 200 '{\"success\":true,\"data\":{\"id\":\"acc_1\",\"name\":\"TLS\"}}'; } }")
        :format(ports[n], dir, n, dir, n)
    end
    return {
      http = table.concat(blocks, "\n"),
      server = [[
location = /call { content_by_lua_block {
  local c = require("chatmaid").new{ api_key = "${KEY}", max_retries = 2, timeout = 5,
    base_url = "https://127.0.0.1:" .. ngx.var.arg_port }
  local out = {}
  for i = 1, 3 do
    local v, err = c:account()
    out[i] = v and v.name or { reason = err.reason, retryable = err.retryable,
                               attempts = err.attempts, message = err.message,
                               str = tostring(err) }
  end
  ngx.say(require("cjson").encode(out))
} }
]],
      vars = { KEY = KEY },
    }
  end)

  teardown(function() os.execute("rm -rf " .. H.shq(dir)) end)

  local function call(name)
    local out = H.curl("'" .. srv:url("/call?port=" .. ports[name]) .. "'")
    local ok, r = pcall(cjson.decode, out)
    assert(ok, out .. "\n" .. srv:error_log())
    return r
  end

  it("a certificate from the trusted CA with the right name: answered, three times", function()
    assert.same({ "TLS", "TLS", "TLS" }, call("good"))
  end)

  for _, case in ipairs{ { "wrong", "a name that is not the host", "host mismatch" },
                         { "untrusted", "a self-signed certificate", "self%-signed" } } do
    it(case[2] .. ": transport/tls, one attempt, the directive named, no secret", function()
      local r = call(case[1])
      for i = 1, 3 do
        local e = r[i]
        assert.equal("table", type(e), cjson.encode(r))
        assert.equal("tls", e.reason)
        assert.is_false(e.retryable)
        assert.equal(1, e.attempts)
        assert.truthy(e.message:find("lua_ssl_trusted_certificate", 1, true), e.message)
        assert.truthy(e.message:find(case[3]), e.message)
        assert.falsy(e.message:find("ca_file", 1, true), e.message)
        assert.falsy(e.str:find(KEY, 1, true))
      end
    end)
  end
end)
