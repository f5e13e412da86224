import type { Scenario } from "../scenario.js";
import { cluster } from "./cluster.js";
import { definitions } from "./definitions.js";
import { fanout } from "./fanout.js";
import { footprint } from "./footprint.js";
import { latency } from "./latency.js";
import { peer } from "./peer.js";
import { replicas } from "./replicas.js";
import { resume } from "./resume.js";
import { runtimes } from "./runtimes.js";
import { schedules } from "./schedules.js";
import { throughput } from "./throughput.js";
import { watchers } from "./watchers.js";

/**
 * Every scenario, in the order of issue 4, then the worker runtimes (a diagnostic), then resume
 * (issue 24), schedules (issue 27), Weft on a Redis Cluster beside one server (issue 26), then the
 * peer (BullMQ FlowProducer, the yardstick of issue 25).
 */
export const SCENARIOS: Scenario[] = [
  throughput,
  latency,
  fanout,
  watchers,
  definitions,
  footprint,
  replicas,
  runtimes,
  resume,
  schedules,
  cluster,
  peer,
];
