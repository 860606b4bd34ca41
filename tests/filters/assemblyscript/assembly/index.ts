// Test filter `as_headers.wasm`, written in AssemblyScript on `@solo-io/proxy-runtime`
// (built by tests/build.rs with the compiler `.ci/setup` installs from npm): what a
// platform engineer's AssemblyScript filter does, to compare wasmgate with Envoy.
//
// Request headers: `/deny` is answered locally, 403 `denied by assemblyscript` with
// `x-as-denied: true`; any other request gets `x-as-config: <plugin configuration, trimmed>`
// (replaced) and `x-as-path: <:path>` (added). Response headers: `x-as-response: seen`.
//
// The configuration is read here, not with the SDK's `getConfiguration()`: proxy-runtime
// 0.1.8's `RootContext.onConfigure` passes the size where the size's out-pointer belongs, so
// what it returns depends on whatever the host wrote last (Envoy and wasmgate differ there).
//
// The runtime creates its root context from the factory registered for the plugin's root
// id (`plugin_root_id`): `as_headers`, or `secret_header`, the root id the differential
// suite configures in both hosts for every filter.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  send_local_response, GrpcStatusValues, Headers, HeaderPair,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class AsHeadersRoot extends RootContext {
  config: string = "";

  onConfigure(configuration_size: u32): bool {
    const bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
    this.config = String.UTF8.decode(bytes).trim();
    return true;
  }

  createContext(context_id: u32): Context {
    return new AsHeaders(context_id, this);
  }
}

class AsHeaders extends Context {
  config: string;

  constructor(context_id: u32, root_context: AsHeadersRoot) {
    super(context_id, root_context);
    this.config = root_context.config;
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const path = stream_context.headers.request.get(":path");
    if (path == "/deny") {
      const headers: Headers = [];
      headers.push(new HeaderPair(String.UTF8.encode("x-as-denied"), String.UTF8.encode("true")));
      send_local_response(403, "as_denied", String.UTF8.encode("denied by assemblyscript\n"),
        headers, GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.replace("x-as-config", this.config);
    stream_context.headers.request.add("x-as-path", path);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-as-response", "seen");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AsHeadersRoot(context_id); }, "as_headers");
registerRootContext((context_id: u32) => { return new AsHeadersRoot(context_id); }, "secret_header");
