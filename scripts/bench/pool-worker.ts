// Worker thread: builds `count` request pairs and posts them back.
import { parentPort, workerData } from 'node:worker_threads';
import { pairMaker, type Pair, type PairSpec } from './jwt.js';

const { spec, count } = workerData as { spec: PairSpec; count: number };
const make = pairMaker(spec);
const pairs: Pair[] = new Array(count);
for (let i = 0; i < count; i++) pairs[i] = make();
parentPort!.postMessage(pairs);
