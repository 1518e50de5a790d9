// The registry of error codes: every code a NodemeshError (and the API's X-Nodemesh-Error header) can carry, with what it means and what to do.

/** Code → one line: what went wrong, and what the user should do about it. */
export const ERROR_CODES = {
  // Unexpected failures
  INTERNAL: 'an unexpected error inside the agent (a bug): retry, and report it with the agent log if it persists',

  // HTTP API: requests
  API_BAD_REQUEST: 'the request is invalid: fix it as the message says',
  API_NOT_FOUND: 'no API endpoint has this path: check the URL',
  API_BAD_METHOD: 'the endpoint does not take this HTTP method: use one the Allow header lists',
  API_UNSUPPORTED: 'a Consul feature nodemesh does not have (WAN federation, …): docs/consul-compatibility.md lists them',
  NODE_UNKNOWN: 'no member of the pool has this node name: check `nodemesh members`',
  API_BAD_PATH: 'the request URL cannot be parsed (bad percent-encoding): encode the path properly',
  API_BAD_QUERY: 'a boolean query flag has a value other than "", true, 1, false or 0: fix the flag',
  API_BAD_PARAM: 'a query parameter has an invalid value: use one the message names',
  API_MISSING_PARAM: 'a required query parameter is missing: add it',
  API_BAD_INDEX: 'the blocking query ?index= is not a non-negative integer: pass the X-Consul-Index of an earlier answer',
  API_BAD_WAIT: 'the blocking query ?wait= is not a duration: pass one such as "30s"',
  API_BAD_STATE: 'the health state in the path is unknown: use any, passing, warning or critical',
  API_FILTER_INVALID: "?filter is not a valid Consul filter expression: fix it (selectors, ==, !=, in, contains, is empty, matches, and, or, not)",
  API_DECODE: 'the request body is not the JSON the endpoint expects: fix the field the message names',
  API_BODY_ENCODING: 'the request body is not valid UTF-8: send UTF-8 JSON',
  API_BODY_TOO_LARGE: 'the request body is over the 1 MiB limit: send a smaller body',
  CSRF_REFUSED: "a browser page of another site tried to write through the agent's API: writes come from the agent's own UI, the CLI or API clients",
  ACL_TOKEN_DENIED: "the request needs the agent's ACL token: pass it (X-Consul-Token header, ?token=, Authorization: Bearer, or --token)",
  AGENT_NOT_READY: 'the agent is not ready yet (not synced with the pool or not listening): wait, and see Reasons in the answer',

  // HTTP API: agent service health answers (Consul's status codes for the aggregated health)
  HEALTH_WARNING: "the service's aggregated health is warning (429): see its checks",
  HEALTH_CRITICAL: "the service's aggregated health is critical (503): see its failing checks",
  HEALTH_MAINTENANCE: 'the service is in maintenance mode (503): take it out of maintenance to receive traffic again',

  // Services and checks
  SERVICE_NAME_MISSING: 'no service name was given: set Name (or put it in the path)',
  SERVICE_NAME_INVALID: "the service name is too long or has '/' or control characters: rename the service",
  SERVICE_ID_MISSING: 'no service ID in the path: give the ID of the service to deregister',
  SERVICE_ID_INVALID: 'the service ID is too long or has control characters: pick another ID',
  SERVICE_META_INVALID: "the service's Meta is invalid: fix the key or value the message names",
  SERVICE_PORT_INVALID: 'the service port is outside 0-65535: fix Port',
  SERVICE_ADDRESS_INVALID: "the service address is unspecified (0.0.0.0 or ::): give the service's real address",
  SERVICE_WEIGHTS_INVALID: 'the service Weights are invalid: Passing must be over 0 and Warning at least 0',
  SERVICE_CONNECT_INVALID: "the service's Connect / Proxy settings are inconsistent: fix each problem listed",
  SERVICE_UNKNOWN: 'no service with this ID or name is registered on this agent: check the ID or name, or register it first',
  SIDECAR_INVALID: 'the sidecar_service stanza is invalid (nested sidecar, or a Kind other than connect-proxy): fix it',
  SIDECAR_NO_PORT: 'every sidecar port in 21000-21255 is taken: give sidecar_service a Port',
  CHECK_INVALID: 'the check definition is invalid or its CheckID is duplicated: fix what the message names',
  CHECK_SCRIPT_DISABLED: 'script checks are not run by nodemesh: use an HTTP, TCP or TTL check',
  CHECK_UNSUPPORTED: 'Docker and gRPC checks are not supported by nodemesh: use an HTTP, TCP or TTL check',
  CHECK_NAME_MISSING: 'the check has no Name: give it one',
  CHECK_SERVICE_UNKNOWN: "the check's ServiceID is not registered on this agent: register the service first",
  CHECK_ID_RESERVED: "the CheckID is reserved for the node's own health (serfHealth): pick another",
  CHECK_ID_MISSING: 'no check ID in the path: give the ID of the check',
  CHECK_NOT_TTL: 'the check does not exist or is not a TTL check: only TTL checks take pass/warn/fail updates',
  CHECK_BAD_STATUS: 'the check status is unknown: use passing, warning or critical',

  // Catalog and local state (internal)
  CATALOG_UNKNOWN_NODE: 'the catalog was asked to change a node it does not hold (a bug): restart the agent, and report it',
  LOCAL_NODE_MISSING: "this agent's own node is missing from the catalog (a bug): restart the agent, and report it",

  // Intentions, authorization and config entries
  INTENTION_BAD_ID: 'the intention ID is not a 36-character UUID: use the ID the API returned',
  INTENTION_NOT_FOUND: 'no such intention: list the intentions to find the right ID or source/destination',
  INTENTION_ID_SET: 'a new intention must not carry an ID: drop ID, or update the existing intention by its ID',
  INTENTION_INVALID: 'the intention is invalid: fix each problem listed',
  INTENTION_DUPLICATE: 'an intention between these services exists already: update or delete that one',
  INTENTION_L7_PROTOCOL: 'L7 Permissions need an HTTP-family destination: set Protocol "http" in its service-defaults first',
  AUTHZ_BAD_REQUEST: 'the authorize request lacks a Target or a valid Connect ClientCertURI: fix the request',
  CONFIG_ENTRY_INVALID: 'the config entry is invalid: fix each problem listed',
  CONFIG_ENTRY_KIND: 'the config entry kind is not supported: use one the message lists',
  CONFIG_ENTRY_NOT_FOUND: 'no config entry of this kind and name: check both',
  SUBSET_FILTER_INVALID: 'a service-resolver subset Filter uses syntax nodemesh does not support: write e.g. Service.Meta.version == v1',
  DURATION_INVALID: 'a duration is not Go duration text: write one such as "30s", "1m30s" or "250ms"',
  REGEX_NOT_RE2: 'a regular expression is not valid RE2 (no backreferences, lookarounds or possessive quantifiers): rewrite it',

  // Pool-wide policy writes
  POLICY_TOKEN_DENIED: 'a write of pool-wide policy (intentions, config entries) needs the operator token: pass it',
  POLICY_NO_WRITER: 'no agent in the pool can sign policy: start one with policy_cert_file/policy_key_file, or write on an agent holding the root key',
  POLICY_WRITER_UNREACHABLE: 'no policy writer answered, nothing changed: retry, or write on a policy writer',
  POLICY_WRITE_FAILED: 'the policy writer failed the write, or answered an error this agent does not know: see the message and the writer\'s log',
  POLICY_ENDPOINT_NOT_FOUND: "the policy writer's listener got a request that is not a policy write: only agents forward writes there",
  POLICY_WRITE_TOO_LARGE: 'a forwarded policy write is over 1 MiB: write a smaller entry',
  POLICY_WRITE_MALFORMED: 'a forwarded policy write is not one JSON object naming a known operation: agents of mismatched versions?',
  POLICY_LISTEN_FAILED: 'cannot listen for forwarded policy writes on the policy port: pick another policy_port',

  // Configuration and start-up
  CONFIG_INVALID: 'the agent configuration (file, flag or environment) is invalid: fix the setting the message names',
  INSECURE_CONFIG: 'refusing to start without the protections a non-dev agent needs: give them, waive them explicitly, or bind dev mode to loopback',
  DATA_DIR_UNUSABLE: 'the data dir cannot be created: fix its path or permissions',
  CAPTURE_RULES_INVALID: 'a transparent-capture rule would name a value nftables must not see (an address that is not IPv4, a port out of range): a bug, report it',
  CAPTURE_APPLY_FAILED: 'nft refused or is missing: install nftables and run the agent with CAP_NET_ADMIN, or turn transparent_proxy off',
  CA_ROOT_NOT_TRUSTED: 'a new signing CA must end in a root the agent already trusts: add the root to ca_trusted_roots_file on every agent and reload them first',
  CA_FILES_READ_ONLY: 'the CA files cannot be written (a read-only mount): rotate by replacing the files and reloading',
  ACL_SYSTEM_ABSENT: 'nodemesh has no ACL system (tokens, policies, roles): it takes acl_token and operator_token from its config; with --consul-addr, /v1/acl goes to Consul',
  MONITOR_UNAVAILABLE: 'this agent was started in-process with a logger that has no monitor tap: read its log directly',
  CONSENSUS_REQUIRED: 'KV, sessions, locks, transactions, prepared queries and snapshots need Consul\'s servers: run the agent with --consul-addr to use a Consul cluster\'s',
  DNS_LISTEN_FAILED: 'cannot listen for DNS: set ports.dns (dns_port) to a free port, or -1 to turn DNS off',
  PEER_ANSWER_INVALID: 'a peer agent answered the pool view with something malformed: that node is listed with the reason; check its version',
  PEER_LISTEN_FAILED: 'cannot listen for peer agents: set peer_port (--peer-port) to a free port, or -1 to turn the pool-wide view off',
  METRICS_LISTEN_FAILED: 'cannot listen for metrics: set ports.metrics (metrics_port) to a free port, or -1 to turn the metrics listener off',
  METRICS_FAILED: 'collecting the metrics failed: the agent log says which collector',
  HTTP_LISTEN_FAILED: 'cannot listen on the HTTP API address: pick another --http-port (is another agent running?)',
  K8S_CONFIG_INVALID: 'the Kubernetes config cannot be loaded or has no current cluster: fix the kubeconfig or run in the cluster',
  K8S_POD_ANNOTATION_INVALID: "a pod's nodemesh annotations are malformed, so it is not registered: fix the annotations",
  K8S_POD_SERVICE_NAME_MISSING: 'an injected pod has no service name, so it is not registered: set the service annotation or an app label',
  K8S_POD_PORT_MISSING: 'an injected pod has no port, so it is not registered: set the port annotation or declare a containerPort',

  // State files
  STATE_CORRUPT: 'a state file in the data dir is not valid JSON: move it away to start empty',
  STATE_FORMAT: 'a state file has a format this agent does not know (written by a newer version?): upgrade, or move it away',
  STATE_WRITE_FAILED: "a state file could not be saved: check the data dir's permissions and free space",

  // Gossip and keyring
  GOSSIP_LISTEN_FAILED: 'cannot listen for gossip on the Serf LAN port: pick another --serf-lan-port',
  GOSSIP_NOT_STARTED: 'gossip is not started yet: retry in a moment',
  GOSSIP_SNAPSHOT_INVALID: 'the saved gossip peers snapshot is damaged; it is ignored (it only speeds up rejoining): nothing to do',
  SERF_TAGS_TOO_LARGE: "the agent's gossip tags are over Serf's 512-byte limit: shorten the node's tag values",
  JOIN_FAILED: "could not join any of the given addresses: check them and that --encrypt matches the pool's key (or use --retry-join)",
  KEYRING_BAD_KEY: 'the gossip key is not base64 of 16, 24 or 32 bytes: make one with `nodemesh keygen`',
  KEYRING_INVALID: "the data dir's keyring file is unreadable or malformed: fix or remove it",
  KEYRING_KEY_NOT_INSTALLED: 'the key is not in the keyring: install it on every agent first',
  KEYRING_NOT_ENABLED: 'gossip encryption is off, so there is no keyring: set encrypt in the config and restart',
  KEYRING_REMOVE_PRIMARY: 'the primary key cannot be removed: make another installed key primary first',
  KEYRING_SAVE_FAILED: "the keyring file cannot be written, so the keyring is unchanged: check the data dir's permissions and free space",

  // Certificates and authorities
  CA_INVALID: 'the CA certificate, key or trusted roots cannot be used: fix the files the message names (make a CA with `nodemesh ca init`)',
  CA_EXISTS: 'the output files exist already: choose another --out (or --name), or move the old files away',
  AUTHORITY_CREDENTIAL_INVALID: 'a policy credential or per-node intermediate is unusable or belongs elsewhere: issue the right one with `nodemesh ca`',
  LEAF_BAD_NAME: "a leaf cannot be issued for this service name: use letters, digits, '.', '_' and '-' only",
  LEAF_NOT_LOCAL: "a leaf is issued only for this node's services: register the service here first, or ask the agent on its node",
  IDENTITY_UNBOUND: "a peer's leaf is signed by a node's intermediate, but the catalog lists no such service on that node: register it there, or fix the peer's leaf",
  ISSUER_NAMES_NO_NODE: "a peer leaf's issuing intermediate names no node: re-issue it with `nodemesh ca issue-intermediate --node`",
  ISSUER_UNTRUSTED: "a peer leaf's issuer is missing, unreadable or does not chain to a trusted root: check the peer's CA files and ca_trusted_roots_file",
  ISSUER_OTHER_DOMAIN: "a peer leaf's issuing intermediate is in another trust domain than the leaf: issue both from the same CA",

  // Consul backend
  CONSUL_UNREACHABLE: 'Consul does not answer: start it with Connect enabled, or fix --consul-addr / CONSUL_HTTP_ADDR',
  CONSUL_ERROR: 'Consul answered an error: see its message (and check --consul-token)',
  CONSUL_NO_CA: 'Consul has no Connect CA: enable Connect on its servers',

  // Data plane
  DATAPLANE_STOPPING: 'the data plane is shutting down, so it opens no new tunnel streams: the dial fails; nothing to do',
  TUNNEL_PROTOCOL: 'a peer broke the tunnel protocol, so the tunnel was closed: check both agents run compatible versions',
  TUNNEL_CLOSED: 'the tunnel kept closing while a stream was being opened: the dial fails and the caller moves on to another instance',
  TUNNEL_PEER_TIMEOUT: 'the tunnel peer did not acknowledge a new stream in time, so the tunnel was taken for dead and closed: check the peer agent',

  // CLI
  CLI_USAGE: 'the command line is invalid: fix the argument or flag the message names (see --help)',
  CLI_BAD_ADDR: 'the --http-addr is not host:port or an http(s) URL: fix it',
  // Data plane: the mesh's own answers to a workload's request (X-Nodemesh-Error on the answer)
  L7_BAD_REQUEST: 'the request cannot be decided safely (an escaped slash, a bad escape, a header with "_" or CR/LF): send a plain path and header names with "-", or loosen the mesh entry\'s RequestNormalization',
  L7_DENIED: 'an L7 intention denies this request (RBAC: access denied): change the intention\'s Permissions if it should pass',
  APP_UNREACHABLE: "the destination's agent cannot reach its local app: check the app is listening on the address and port registered",
  UPSTREAM_CALLER_UNKNOWN: 'the upstream listener cannot tell which local service is calling: call from the address the service registered, or declare the upstream on it',
  UPSTREAM_UNAVAILABLE: 'no healthy instance of the destination (or its subset, or its failover): check /v1/health/connect/<service>',
  UPSTREAM_TIMEOUT: 'the instance did not answer within the route\'s RequestTimeout (or a connection slot did not free up): raise the timeout or look at the instance',
  UPSTREAM_CONNECT_FAILED: 'no tunnel to an instance could be opened: check the destination agent is up and reachable',
  UPSTREAM_OVERFLOW: 'the circuit breaker shed the request (MaxConcurrentRequests or MaxPendingRequests): raise the limits or add instances',
  UPSTREAM_ERROR: 'the exchange with the instance failed after it started: see the message and the instance\'s logs',
  RATE_LIMITED: "the resolver's local rate limit is exhausted: slow down or raise Nodemesh.RateLimit",
  FAULT_ABORT: 'the route injects this failure on purpose (Nodemesh.Fault): remove the fault from the service-router when the test is over',

  CLI_TIMEOUT: 'the agent accepted the connection but did not answer in time: check that it is healthy, or raise --timeout',
  CLI_UNREACHABLE: "the CLI cannot reach the agent: start one, or point --http-addr / NODEMESH_HTTP_ADDR at it",
  CLI_API_ERROR: "the agent refused the CLI's request: see its message (pass --token on 403)",
  CLI_FILE: 'a file given to the CLI cannot be read or is not the JSON object expected: fix the file',
  CLI_CAS_FAILED: 'the config entry changed since the --cas index: read it again and retry with the new index',
  VERIFY_FAILED: '`nodemesh verify` found failing checks: change what the table says',
} as const;

/** A registered error code: the compiler refuses any other. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether `code` (from a peer, say) is a registered code. */
export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
