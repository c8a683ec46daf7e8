/** The part of autocannon's API that bench/server.ts uses (the package ships no types). */
declare module 'autocannon' {
  namespace autocannon {
    interface Options {
      url: string;
      connections?: number;
      duration?: number;
      pipelining?: number;
      method?: string;
      headers?: Record<string, string>;
      body?: string;
      /** Per request: `setupRequest` may return the request with another body (a new one each time). */
      requests?: Array<{ setupRequest?: (request: Request) => Request }>;
      /** Requests per second from all connections together (latency corrected for coordinated omission). */
      overallRate?: number;
    }
    interface Request {
      body?: string;
      [key: string]: unknown;
    }
    interface Histogram {
      average: number;
      total: number;
      p50: number;
      p99: number;
    }
    interface Result {
      requests: Histogram;
      latency: Histogram;
      non2xx: number;
      errors: number;
      statusCodeStats?: Record<string, { count: number }>;
    }
  }
  function autocannon(options: autocannon.Options): Promise<autocannon.Result>;
  export default autocannon;
}
