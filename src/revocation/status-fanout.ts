// Who hears that a status list changed. This instance's cached list tokens and open status streams
// hear it at once; the other instances over the bus; and a reconciliation pass finds, every second,
// the bits a race between a revocation and an issuance record left unset (status-list.ts).
import type { FastStore } from '../storage/fast-store.js';

/** `undefined`: any list may have changed (messages were lost), drop everything derived */
export type ListsChanged = (lists: string[] | undefined) => void;

const CHANNEL = 'status-lists';

export interface StatusFanOutDeps {
  bus: Pick<FastStore, 'publish' | 'subscribe' | 'onReconnect'>;
  /** what this instance derives from the lists: the publisher's cache, the status streams */
  local: ListsChanged;
  /** sets the bits revocations could not find yet; resolves to the lists it changed */
  reconcile: () => Promise<string[]>;
  reconcileEveryMs?: number;
}

export class StatusListFanOut {
  readonly #deps: StatusFanOutDeps;
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: StatusFanOutDeps) {
    this.#deps = deps;
  }

  /** Listens to the other instances and starts reconciling. */
  start(): void {
    const { bus, local } = this.#deps;
    bus.subscribe(CHANNEL, (message) => {
      try {
        local(JSON.parse(message) as string[]);
      } catch {
        local(undefined);
      }
    });
    // messages may have been lost while Redis was away
    bus.onReconnect(() => local(undefined));
    this.#timer = setInterval(() => void this.reconcileOnce(), this.#deps.reconcileEveryMs ?? 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Lists changed by a revocation event: every instance applies those from the revocation list itself. */
  changedHere(lists: string[] | undefined): void {
    this.#deps.local(lists);
  }

  /** Lists changed by this instance alone (a late issuance record, a reconciliation): tell the others too. */
  changedForAll(lists: string[]): void {
    this.#deps.local(lists);
    void this.#deps.bus.publish(CHANNEL, JSON.stringify(lists)).catch(() => {});
  }

  /** One reconciliation pass (the timer's; tests call it directly). A failed pass waits for the next. */
  async reconcileOnce(): Promise<void> {
    const lists = await this.#deps.reconcile().catch(() => []);
    if (lists.length) this.changedForAll(lists);
  }
}
