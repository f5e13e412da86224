/** Bounds of an {@link LruCache}. */
export interface LruCacheOptions<V> {
  /** Most entries in one generation: the cache keeps at least this many recently used ones, at most twice as many. */
  maxEntries: number;
  /**
   * Most total weight in one generation (at most twice this in all, plus the last entry set).
   * @defaultValue Infinity
   */
  maxWeight?: number;
  /**
   * The weight of a value (e.g. the tasks of a workflow), a positive number.
   * @defaultValue every value weighs 1
   */
  weigh?: (value: V) => number;
}

/**
 * An approximately least-recently-used map in two generations: entries set or
 * read go to the current generation; when it is full (entries or weight) it
 * becomes the old one and the previous old generation is dropped at once. A
 * hit is one Map lookup (two when the entry is in the old generation, which
 * moves it to the current one), and evicting costs nothing per entry, where an
 * exact LRU deletes and re-inserts the key on every hit.
 */
export class LruCache<K, V> {
  private current = new Map<K, V>();
  private old = new Map<K, V>();
  private currentWeight = 0;
  private readonly maxEntries: number;
  private readonly maxWeight: number;
  private readonly weigh: ((value: V) => number) | undefined;

  constructor(options: LruCacheOptions<V>) {
    this.maxEntries = Math.max(1, options.maxEntries);
    this.maxWeight = options.maxWeight ?? Number.POSITIVE_INFINITY;
    this.weigh = options.weigh;
  }

  get(key: K): V | undefined {
    const value = this.current.get(key);
    if (value !== undefined) return value;
    const aged = this.old.get(key);
    if (aged !== undefined) {
      this.old.delete(key);
      this.insert(key, aged);
    }
    return aged;
  }

  set(key: K, value: V): void {
    const present = this.current.get(key);
    if (present !== undefined) {
      // Already in the young generation: replaced in place (a hot key is set on every step of its run).
      this.currentWeight += this.weightOf(value) - this.weightOf(present);
      this.current.set(key, value);
      return;
    }
    this.old.delete(key);
    this.insert(key, value);
  }

  /** Entries held in both generations. */
  get size(): number {
    return this.current.size + this.old.size;
  }

  /** Total weight held in both generations. */
  get weight(): number {
    let total = this.currentWeight;
    for (const value of this.old.values()) total += this.weightOf(value);
    return total;
  }

  private insert(key: K, value: V): void {
    const weight = this.weightOf(value);
    if (
      this.current.size > 0 &&
      (this.current.size >= this.maxEntries || this.currentWeight + weight > this.maxWeight)
    ) {
      this.old = this.current;
      this.current = new Map();
      this.currentWeight = 0;
    }
    this.current.set(key, value);
    this.currentWeight += weight;
  }

  private weightOf(value: V): number {
    return this.weigh === undefined ? 1 : this.weigh(value);
  }
}
