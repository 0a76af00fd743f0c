// Poplar's services as the pages see them: gRPC-Web to the server that served this page,
// with protobuf messages described by the server's own descriptors. Building the registry
// at run time from /poplar-descriptors.binpb means no generated code to keep in step with
// the .proto files: the page speaks whatever the binary that serves it was built with.
import {
  Code,
  ConnectError,
  createClient,
  createFileRegistry,
  createGrpcWebTransport,
  FileDescriptorSetSchema,
  fromBinary,
} from "./vendor/rpc.js";

const PACKAGE = "poplar.measures.v1";

// The enums the page branches on, by their proto names less the type prefix
// (SIGNIFICANCE_BETTER -> Significance.BETTER), looked up in the descriptors.
const ENUMS = ["AreaLevel", "Dimension", "ValueType", "Polarity", "PeriodType", "Suppression", "Significance"];

/** The server's descriptors as a registry, and a gRPC-Web transport that signs every
 * call with the token `token()` gives at the time. */
async function registryAndTransport(token) {
  const response = await fetch("/poplar-descriptors.binpb");
  if (!response.ok) throw new Error(`could not load the service description (HTTP ${response.status})`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  const transport = createGrpcWebTransport({
    baseUrl: location.origin,
    useBinaryFormat: true,
    interceptors: [
      (next) => async (request) => {
        request.header.set("authorization", `Bearer ${token()}`);
        return next(request);
      },
    ],
  });
  return { registry, transport };
}

function clientOf(registry, transport, name) {
  const service = registry.getService(name);
  if (!service) throw new Error(`the server does not describe ${name}`);
  return createClient(service, transport);
}

/** Fetches the descriptors and returns {client, enums} for a token getter. */
export async function connect(token) {
  const { registry, transport } = await registryAndTransport(token);
  const client = clientOf(registry, transport, `${PACKAGE}.MeasuresService`);
  return { client, enums: enumsOf(registry, PACKAGE, ENUMS) };
}

/** The stewards' console: {studies, governance, enums} (the studies service's enums).
 * Every call is the server's to allow: it refuses anyone but a data steward. */
export async function connectConsole(token) {
  const { registry, transport } = await registryAndTransport(token);
  return {
    studies: clientOf(registry, transport, "poplar.studies.v1.StudiesService"),
    governance: clientOf(registry, transport, "poplar.governance.v1.GovernanceService"),
    enums: enumsOf(registry, "poplar.studies.v1", ["StudyState", "ParameterType", "Decision", "OutputState", "OutputDecision", "Format"]),
  };
}

function enumsOf(registry, pkg, names) {
  const enums = {};
  for (const name of names) {
    const desc = registry.getEnum(`${pkg}.${name}`);
    if (!desc) throw new Error(`the server does not describe ${pkg}.${name}`);
    const byName = Object.fromEntries(desc.values.map((v) => [v.localName, v.number]));
    // A misspelt or renamed value is a bug to hear about, not a silent `undefined`.
    enums[name] = new Proxy(byName, {
      get(target, key) {
        if (typeof key === "string" && !(key in target)) throw new Error(`${name}.${key} is not in the server's proto`);
        return target[key];
      },
    });
    enums[name].nameOf = (number) => desc.values.find((v) => v.number === number)?.localName ?? String(number);
  }
  return enums;
}

/** What went wrong, in words for the person at the screen, and whether to sign in again. */
export function describeError(error) {
  const e = ConnectError.from(error);
  switch (e.code) {
    case Code.Unauthenticated:
      return { signIn: true, text: "That access token was not accepted. Check it, or ask for a new one, and sign in again." };
    case Code.PermissionDenied:
      return { text: `Your role may not see this: ${e.rawMessage}` };
    case Code.ResourceExhausted:
      // The server uses this code for a spent daily budget, and also for its memory limit
      // and sign-in throttle: its own message says which.
      return {
        text: `A limit was reached, so the server would not answer: ${e.rawMessage}. What is already on screen stays.`,
      };
    case Code.InvalidArgument:
      return { text: `The server could not answer that request: ${e.rawMessage}` };
    case Code.Unavailable:
      return { text: "The server could not be reached. Check your connection and try again." };
    default:
      return { text: `The request failed (${Code[e.code] ?? e.code}): ${e.rawMessage}` };
  }
}
