import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { RedisClient } from "../../redis/redis.js";
import { textSize, valueSize } from "./answer-size.js";
import { anySlotPipeline } from "./pipelines.js";

/** Bytes kept in every answer for its own framing (the envelope, the outer field). */
export const ANSWER_FRAMING = 16;
/** Bytes a payload field takes besides its content (tag and length). */
const FIELD_FRAMING = 6;

/** A payload an answer includes only if it fits, read from Redis only then. */
export interface WantedPayload {
  /** Redis hash and field holding it. */
  key: string;
  field: string;
  /** Its stored size (HSTRLEN). */
  storedBytes: number;
  /**
   * Takes the stored text once read and returns the bytes it would add to the answer: at least its
   * size as stored, so that the answer fits either codec (binary or JSON).
   */
  measure: (text: string) => number;
  /** Adds what `measure` measured to the answer. */
  include: () => void;
  /** Marks the payload as left out of the answer. */
  omit: () => void;
}

/**
 * What one answer has left of the answer limit. Its parts take room as they are added, the
 * payloads last, in the order asked for: each is read from Redis only once its stored size is known
 * to fit, then measured as encoded and left out after all if its encoding is larger than its room.
 */
export class AnswerRoom {
  private left: number;
  private wanted: WantedPayload[] = [];

  constructor(maxBytes: number) {
    this.left = maxBytes - ANSWER_FRAMING;
  }

  /** Bytes left. */
  get bytesLeft(): number {
    return this.left;
  }

  /** Takes `bytes` if they fit; false (and nothing taken) when they do not. */
  take(bytes: number): boolean {
    if (bytes > this.left) return false;
    this.left -= bytes;
    return true;
  }

  /** Asks for a payload: reserved now by its stored size, or omitted at once when that does not fit. */
  want(payload: WantedPayload): void {
    if (payload.storedBytes === 0) return;
    if (!this.take(payload.storedBytes + FIELD_FRAMING)) {
      payload.omit();
      return;
    }
    this.wanted.push(payload);
  }

  /** Reads the payloads asked for (one pipeline) and includes each that fits as measured. */
  async read(redis: RedisClient): Promise<void> {
    const wanted = this.wanted;
    this.wanted = [];
    if (wanted.length === 0) return;
    const pipeline = anySlotPipeline(redis);
    for (const w of wanted) pipeline.hget(w.key, w.field);
    const results = (await pipeline.exec()) ?? [];
    wanted.forEach((w, i) => {
      const [err, text] = results[i] ?? [null, null];
      if (err !== null) throw err;
      const reserved = w.storedBytes + FIELD_FRAMING;
      this.left += reserved;
      if (typeof text !== "string") return;
      const bytes = w.measure(text) + FIELD_FRAMING;
      if (this.take(bytes)) w.include();
      else w.omit();
    });
  }
}

/** A JSON payload as a Value, with the bytes it takes in an answer (the larger of JSON and encoding). */
export function measuredValue(text: string): { value: Value; bytes: number } {
  const json = JSON.parse(text) as JsonValue;
  return { value: fromJson(ValueSchema, json), bytes: Math.max(textSize(text), valueSize(json)) };
}
