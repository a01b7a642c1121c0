// Types the generated checks assign the dashboards to.
//
// `Dashboard` and the panel option types come from @grafana/schema. Two
// adjustments are needed to check JSON against them, both kept strict:
//
// - JSON cannot name a TypeScript enum member, so `Json<T>` turns every
//   enum in `T` into the literal values it stands for (`ThresholdsMode` becomes
//   `"absolute" | "percentage"`); every other property, optional or not, and
//   every excess-property check stays as the schema has it.
// - The schema types a panel's `options` and `targets` as open records. For the
//   panel types the tradestack dashboards use, `KnownPanel` ties `options` and
//   `fieldConfig.defaults.custom` to the schema's `Options`/`FieldConfig` of that
//   panel type, and `targets` to the query shape of the panel's datasource
//   (@grafana/schema does not ship the Prometheus or SQL query types, so those
//   two are described here, on top of the schema's `DataQuery`).

import type {
  Dashboard,
  DataQuery,
  FieldConfig,
  FieldConfigSource,
  Panel,
} from "@grafana/schema";
import type * as BarGauge from "@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen";
import type * as Candlestick from "@grafana/schema/dist/esm/raw/composable/candlestick/panelcfg/x/CandlestickPanelCfg_types.gen";
import type * as Heatmap from "@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen";
import type * as PieChart from "@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as StateTimeline from "@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen";
import type * as Table from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

/** `T` as JSON spells it: string enums become their values, the rest is unchanged. */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | bigint | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** A whole dashboard file, as @grafana/schema's `Dashboard` describes it. */
export type DashboardJson = Json<Dashboard>;

/** The provisioned datasources (deploy/grafana/provisioning/datasources). */
export type PrometheusRef = { type: "prometheus"; uid: "prometheus" };
export type SqlRef = {
  type: "grafana-postgresql-datasource";
  uid: "postgres" | "questdb";
};

/** A Prometheus query as the Prometheus datasource saves it. */
export interface PrometheusTarget extends Json<Omit<DataQuery, "datasource">> {
  datasource: PrometheusRef;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: "time_series" | "table" | "heatmap";
  interval?: string;
  intervalFactor?: number;
  exemplar?: boolean;
  editorMode?: "code" | "builder";
}

/** A raw SQL query as the PostgreSQL datasource saves it. */
export interface SqlTarget extends Json<Omit<DataQuery, "datasource">> {
  datasource: SqlRef;
  rawSql: string;
  rawQuery: true;
  editorMode: "code";
  format: "time_series" | "table";
}

type FieldConfigOf<Custom> = Omit<Json<FieldConfigSource>, "defaults"> & {
  defaults: Omit<Json<FieldConfig>, "custom"> & { custom?: Json<Custom> };
};

type Common = Omit<
  Json<Panel>,
  "type" | "options" | "fieldConfig" | "targets" | "datasource"
> & { id: number; title: string; gridPos: Json<Panel>["gridPos"] & {} };

type PanelOf<Type extends string, Options, Custom> = Common & {
  type: Type;
  options: Json<Options>;
  fieldConfig: FieldConfigOf<Custom>;
} & (
    | { datasource: PrometheusRef; targets: PrometheusTarget[] }
    | { datasource: SqlRef; targets: SqlTarget[] }
  );

/** Panels without a `FieldConfig` in the schema take no `custom` settings. */
type NoCustom = Record<string, never>;

/** Every panel type the tradestack dashboards use, checked in full. */
export type KnownPanel =
  | PanelOf<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<"stat", Stat.Options, NoCustom>
  | PanelOf<"bargauge", BarGauge.Options, NoCustom>
  | PanelOf<"table", Table.Options, Table.FieldConfig>
  | PanelOf<"heatmap", Heatmap.Options, Heatmap.FieldConfig>
  | PanelOf<"state-timeline", StateTimeline.Options, StateTimeline.FieldConfig>
  | PanelOf<"piechart", PieChart.Options, PieChart.FieldConfig>
  | PanelOf<"candlestick", Candlestick.Options, Candlestick.FieldConfig>;
