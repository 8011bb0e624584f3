import { describe, expect, it } from "vitest";
import { seriesToCsv, toCsv } from "../src/lib/csv";

describe("CSV export", () => {
  it("quotes commas, quotes and newlines, and blanks missing values", () => {
    const csv = toCsv(["name", "value"], [
      ['a "quoted", name', 1.5],
      ["line\nbreak", null],
      ["plain", Number.NaN],
    ]);
    expect(csv).toBe('name,value\r\n"a ""quoted"", name",1.5\r\n"line\nbreak",\r\nplain,\r\n');
  });

  it("writes curves as one row per round", () => {
    const csv = seriesToCsv([
      { name: "run A", points: [{ x: 1, y: 0.5 }, { x: 2, y: 0.6 }] },
      { name: "run B", points: [{ x: 2, y: 0.7 }, { x: 3, y: 0.8 }] },
    ]);
    expect(csv.split("\r\n")).toEqual(["round,run A,run B", "1,0.5,", "2,0.6,0.7", "3,,0.8", ""]);
  });
});
