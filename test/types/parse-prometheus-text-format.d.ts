// Types for parse-prometheus-text-format 1.x (it ships none): what its README documents it returns.
declare module 'parse-prometheus-text-format' {
  export interface PrometheusSample {
    labels?: Record<string, string>
    /** Counters, gauges, untyped. */
    value?: string
    /** Histograms: cumulative counts by upper bound ('+Inf' included), with count and sum. */
    buckets?: Record<string, string>
    /** Summaries. */
    quantiles?: Record<string, string>
    count?: string
    sum?: string
  }
  export interface PrometheusFamily {
    name: string
    help: string
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
    metrics: PrometheusSample[]
  }
  /** Throws (InvalidLineError) on a line that is not valid text exposition format. */
  export default function parsePrometheusTextFormat (text: string): PrometheusFamily[]
}
