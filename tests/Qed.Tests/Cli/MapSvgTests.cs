using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;
using Qed.Cli.Commands.Map;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed map --output=svg</c>, parsed with System.Xml.Linq and checked against <c>qemu-img map --output=json</c> run at
/// test time on the same images: the cells' kinds, depths and byte ranges (exactly, at one cluster per cell; by the
/// documented rule where a cell stands for several clusters), the totals, the L2 table boundaries, the layout of the
/// cells on the grid, the legend, and a file name that needs escaping.
/// </summary>
public sealed class MapSvgTests : IDisposable
{
    private static readonly XNamespace s_svg = "http://www.w3.org/2000/svg";

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A run of the map: kind (data, zero, unallocated), depth (null for unallocated) and byte range.</summary>
    private sealed record Run(string Kind, int? Depth, long Offset, long Length)
    {
        public long End => Offset + Length;
    }

    [Fact]
    public void Cells_equal_qemu_img_map_on_qed_chains_zero_clusters_and_raw_holes()
    {
        // QED with data, zero clusters and unallocated clusters, 4 KiB clusters and 2-cluster tables (4 MiB per L2 table).
        string image = _dir.File("data.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", image, "12M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 8k", "write -z 64k 12k", "write -P 2 4092k 8k", "write -P 3 9M 1M", "write -z 11M 4k");

        // QED over QED over raw: data at depths 0, 1 and 2, zeros at depth 1, unallocated past the shorter layers.
        string baseRaw = _dir.File("base.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", baseRaw, "4M");
        Tools.QemuIo(_dir.Path, "raw", baseRaw, "write -P 4 0 1M", "write -P 5 3M 64k");
        string middle = _dir.File("middle.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", middle, "6M");
        Tools.QemuIo(_dir.Path, "qed", middle, "write -P 6 512k 128k", "write -z 2M 256k", "write -P 7 5M 64k");
        string top = _dir.File("top.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "middle.qed", "-F", "qed", top, "8M");
        Tools.QemuIo(_dir.Path, "qed", top, "write -P 8 576k 64k", "write -z 3M 64k", "write -P 9 7M 64k");

        // A raw file with holes (cells of 4 KiB blocks).
        string holes = _dir.File("holes.raw");
        File.WriteAllBytes(holes, []);
        using (var handle = File.OpenHandle(holes, FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.SetLength(handle, 3 << 20);
        }
        Tools.QemuIo(_dir.Path, "raw", holes, "write -P 1 8k 4k", "write -P 2 1M 300k");

        string[][] ranges = [[], ["--start-offset=100", "--max-length=3000000"], ["--start-offset=1M", "--max-length=2M"], ["--start-offset=1T"]];
        // Cells are clusters (QED) or 4 KiB blocks (raw); L2 tables are drawn for the QED image asked, not its backing files.
        var images = new (string Path, string[] Options, long Unit, long? L2Span)[]
        {
            (image, [], 4096, 4L << 20),
            (top, [], 65536, 2L << 30),
            (middle, ["-U"], 65536, 2L << 30),
            (holes, ["-f", "raw"], 4096, null),
            (image, ["-f", "raw"], 4096, null),
        };
        int compared = 0;
        foreach (var (path, options, unit, l2Span) in images)
        {
            foreach (string[] range in ranges)
            {
                string[] args = ["map", .. options, .. range, path];
                var expected = QemuRuns(args);
                var svg = Svg(args);
                var grid = Grid.Of(svg);
                Assert.Equal(unit, grid.CellBytes);

                var cells = Cells(svg, grid);
                Assert.Equal(Merge(expected), Merge(cells));
                CheckTotals(svg, expected);
                CheckBoundaries(svg, grid, l2Span, strideExpected: 1);
                CheckLegend(svg, expected);
                compared++;
            }
        }
        Assert.Equal(images.Length * ranges.Length, compared);
    }

    [Fact]
    public void A_large_sparse_image_is_drawn_at_a_scale_with_a_bounded_number_of_elements()
    {
        // 4 KiB clusters, table_size 16: 256 GiB is 2^26 clusters, so a cell stands for 1024 of them (4 MiB), and the
        // 8192 L2 tables (32 MiB each) are more than the 4096 lines drawn: every second boundary is.
        string image = _dir.File("sparse.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=16", image, "256G");
        Tools.QemuIo(_dir.Path, "qed", image,
            "write -P 1 0 4k",           // a little data in a cell of unallocated clusters: the cell shows data
            "write -z 4M 4k",            // a zero cluster alone: the cell shows zeros
            "write -P 2 100G 12M",       // three whole cells of data
            "write -z 200G 8M",          // two whole cells of zeros
            "write -P 3 201G 4k", "write -z 215822114816 64k", // data and zeros in one cell (201G + 8k): data
            "write -P 4 274877902848 4k"); // the last cluster (256G - 4k)

        string[] args = ["map", image];
        var expected = QemuRuns(args);
        var svg = Svg(args);
        var grid = Grid.Of(svg);
        Assert.Equal(4L << 20, grid.CellBytes);
        Assert.Contains("one cell = 1024 clusters (4194304 bytes)", string.Concat(svg.Descendants(s_svg + "text").Select(t => t.Value + "\n")), StringComparison.Ordinal);

        int cellCount = (int)((256L << 30) / grid.CellBytes);
        var expectedCells = ExpectedCellKinds(expected, grid, cellCount);
        var cells = Cells(svg, grid);
        var drawn = new (string Kind, int? Depth)[cellCount];
        foreach (var cell in cells)
        {
            for (long offset = cell.Offset; offset < cell.End; offset += grid.CellBytes)
            {
                drawn[(offset - grid.Origin) / grid.CellBytes] = (cell.Kind, cell.Depth);
            }
        }
        Assert.Equal(expectedCells, drawn);
        Assert.Equal(("data", 0), drawn[0]);
        Assert.Equal(("zero", 0), drawn[1]);
        Assert.Equal(("data", 0), drawn[(int)((201L << 30) / grid.CellBytes)]);
        Assert.Equal(("data", 0), drawn[^1]);

        // Elements are bounded by cells and rows, not by clusters: here a handful per row.
        int rows = cellCount / grid.Columns;
        Assert.True(cells.Count <= rows + 20, $"{cells.Count} cells drawn for {rows} rows");
        CheckTotals(svg, expected);
        CheckBoundaries(svg, grid, 32L << 20, strideExpected: 2);
        CheckLegend(svg, expected);
    }

    [Fact]
    public void A_file_name_with_xml_characters_is_escaped()
    {
        string name = "we<&\"ird>'\u0001.qed";
        string image = _dir.File(name);
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1M");
        Tools.QemuIo(_dir.Path, "qed", image, "write 0 64k");

        string text = QedCli.Ok("map", "--output=svg", image).StdOut;
        Assert.StartsWith("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", text, StringComparison.Ordinal);
        Assert.DoesNotContain("<&", text, StringComparison.Ordinal);
        var svg = XDocument.Parse(text);
        string shown = image.Replace('\u0001', '\uFFFD');
        Assert.Equal($"qed map: {shown}", svg.Root!.Element(s_svg + "title")!.Value);
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value == $"qed map: {shown}");
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value.Contains($"({shown})", StringComparison.Ordinal));
    }

    [Fact]
    public void Cell_kinds_follow_the_rule_for_random_extents()
    {
        // CellGrid against a direct count per cell: random ranges, granules and extents (aligned or not), scaled or not.
        int seed = TestSeed.For(nameof(Cell_kinds_follow_the_rule_for_random_extents));
        var random = new Random(seed);
        var kinds = new[] { CellKind.Of(BlockState.Data, 0), CellKind.Of(BlockState.Data, 1), CellKind.Of(BlockState.Zero, 0), CellKind.Of(BlockState.Zero, 2), CellKind.Unallocated };
        const int Cases = 100;
        int run = 0;
        for (int i = 0; i < Cases; i++)
        {
            long unit = 512L << random.Next(0, 5);
            long start = random.Next(0, 3) == 0 ? 0 : random.NextInt64(0, 100 * unit);
            long length = random.Next(0, 4) == 0 ? random.NextInt64(CellGrid.MaxCells * unit, 4L * CellGrid.MaxCells * unit) : random.NextInt64(1, 300 * unit);
            long end = start + length;
            var extents = new List<(long Offset, long Length, CellKind Kind)>();
            for (long offset = start; offset < end;)
            {
                long piece = Math.Min(end - offset, random.Next(0, 2) == 0 ? random.NextInt64(1, 3 * unit) : unit * random.NextInt64(1, 50000));
                extents.Add((offset, piece, kinds[random.Next(kinds.Length)]));
                offset += piece;
            }

            var grid = new CellGrid(start, end, unit);
            foreach (var (offset, pieceLength, kind) in extents)
            {
                grid.Add(offset, pieceLength, kind);
            }
            grid.Complete();

            Assert.True(grid.Count <= CellGrid.MaxCells);
            Assert.True(grid.CellBytes == unit || (end - 1) / (grid.CellBytes / 2) - start / (grid.CellBytes / 2) + 1 > CellGrid.MaxCells);
            int next = 0;
            for (int cell = 0; cell < grid.Count; cell++)
            {
                long cellStart = grid.CellStart(cell);
                long cellEnd = grid.CellEnd(cell);
                Assert.Equal(cell == 0 ? start : grid.CellEnd(cell - 1), cellStart);
                var bytes = new Dictionary<CellKind, long>();
                while (next < extents.Count && extents[next].Offset + extents[next].Length <= cellStart)
                {
                    next++;
                }
                for (int e = next; e < extents.Count && extents[e].Offset < cellEnd; e++)
                {
                    var extent = extents[e];
                    bytes[extent.Kind] = bytes.GetValueOrDefault(extent.Kind) + Math.Min(cellEnd, extent.Offset + extent.Length) - Math.Max(cellStart, extent.Offset);
                }
                var want = bytes.OrderBy(p => p.Key.State).ThenByDescending(p => p.Value).ThenBy(p => p.Key.Depth).First().Key;
                Assert.True(want == grid[cell], $"seed {seed}, case {i}, cell {cell}: {grid[cell]} drawn, {want} expected");
            }
            Assert.Equal(end, grid.CellEnd(grid.Count - 1));
            run++;
        }
        Assert.Equal(Cases, run);
    }

    [Fact]
    public void An_image_in_use_is_refused_as_qemu_img_refuses_it_and_drawn_with_U()
    {
        string image = _dir.File("busy.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 128k");
        using var holder = Qed.Tests.Locking.BackgroundProcess.Start(_dir.Path, "qemu-io", "-c", "sleep 60000", image);
        Qed.Tests.Locking.LockTable.WaitForHolder(image, holder);

        var qemu = Tools.QemuImgRaw(_dir.Path, "map", "--output=json", image);
        var ours = QedCli.Run("map", "--output=svg", image);
        Assert.Equal((1, 1), (qemu.ExitCode, ours.ExitCode));
        Assert.Equal(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]), QedCli.Lines(ours.StdErr)[0]);
        Assert.Equal("", ours.StdOut);

        string[] args = ["map", "-U", image];
        var svg = Svg(args);
        Assert.Equal(Merge(QemuRuns(args)), Merge(Cells(svg, Grid.Of(svg))));
    }

    [Fact]
    public void A_corrupt_table_gives_one_line_and_no_half_picture()
    {
        string image = _dir.File("bad.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 64k");
        Tools.PokeU64(image, 65536, 1UL << 40); // L1 entry 0 far past the end of the file

        var ours = QedCli.Run("map", "--output=svg", image);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.Single(QedCli.Lines(ours.StdErr));
        Assert.Contains("L1 entry 0", ours.StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Refusals_are_map_s()
    {
        var ours = QedCli.Run("map", "--output=png", _dir.File("missing.qed"));
        var qemu = Tools.QemuImgRaw(_dir.Path, "map", "--output=png", _dir.File("missing.qed"));
        Assert.Equal((1, 1), (qemu.ExitCode, ours.ExitCode));
        Assert.Equal(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]), QedCli.Lines(ours.StdErr)[0]);
        Assert.Equal("", ours.StdOut);
        Assert.Equal(1, QedCli.Run("map", "--output=svg", _dir.File("missing.qed")).ExitCode);
    }

    private static XDocument Svg(string[] mapArgs) => XDocument.Parse(QedCli.Ok([mapArgs[0], "--output=svg", .. mapArgs[1..]]).StdOut);

    /// <summary>qemu-img map's extents as runs: data and zeros with their depth, unallocated without.</summary>
    private List<Run> QemuRuns(string[] mapArgs)
    {
        var result = Tools.QemuImg(_dir.Path, [mapArgs[0], "--output=json", .. mapArgs[1..]]);
        using var json = JsonDocument.Parse(result.StdOut);
        var runs = new List<Run>();
        foreach (var extent in json.RootElement.EnumerateArray())
        {
            long length = extent.GetProperty("length").GetInt64();
            if (length == 0)
            {
                continue;
            }
            bool present = extent.GetProperty("present").GetBoolean();
            bool data = extent.GetProperty("data").GetBoolean();
            int depth = extent.GetProperty("depth").GetInt32();
            runs.Add(new Run(data ? "data" : present ? "zero" : "unallocated", present ? depth : null, extent.GetProperty("start").GetInt64(), length));
        }
        return runs;
    }

    /// <summary>Neighbouring runs of one kind as one (qemu-img splits runs where host offsets jump; the picture splits them at rows).</summary>
    private static List<Run> Merge(List<Run> runs)
    {
        var merged = new List<Run>();
        foreach (var run in runs)
        {
            if (merged.Count > 0 && merged[^1].Kind == run.Kind && merged[^1].Depth == run.Depth && merged[^1].End == run.Offset)
            {
                merged[^1] = merged[^1] with { Length = merged[^1].Length + run.Length };
            }
            else
            {
                merged.Add(run);
            }
        }
        return merged;
    }

    /// <summary>The grid the picture declares on its root.</summary>
    private sealed record Grid(long Start, long End, long CellBytes, long Origin, int Columns, int CellPx, int Top, int Left)
    {
        public static Grid Of(XDocument svg)
        {
            var root = svg.Root!;
            Assert.Equal(s_svg + "svg", root.Name);
            long L(string name) => long.Parse(root.Attribute(name)!.Value, CultureInfo.InvariantCulture);
            return new Grid(L("data-start"), L("data-end"), L("data-cell-bytes"), L("data-origin"), (int)L("data-columns"), (int)L("data-cell-px"),
                (int)L("data-grid-top"), (int)L("data-grid-left"));
        }
    }

    /// <summary>The cells drawn, checked to tile the range in order, each on one row at the place its offset gives.</summary>
    private static List<Run> Cells(XDocument svg, Grid grid)
    {
        var runs = new List<Run>();
        long next = grid.Start;
        foreach (var rect in svg.Descendants(s_svg + "rect").Where(r => (string?)r.Attribute("class") == "cell"))
        {
            long offset = long.Parse(rect.Attribute("data-offset")!.Value, CultureInfo.InvariantCulture);
            long length = long.Parse(rect.Attribute("data-length")!.Value, CultureInfo.InvariantCulture);
            string kind = rect.Attribute("data-kind")!.Value;
            int? depth = rect.Attribute("data-depth") is { } d ? int.Parse(d.Value, CultureInfo.InvariantCulture) : null;
            Assert.Equal(next, offset);
            Assert.True(length > 0);
            Assert.Equal(kind == "unallocated", depth is null);

            long first = (offset - grid.Origin) / grid.CellBytes;
            long last = (offset + length - 1 - grid.Origin) / grid.CellBytes;
            Assert.Equal(first / grid.Columns, last / grid.Columns);
            int I(string name) => int.Parse(rect.Attribute(name)!.Value, CultureInfo.InvariantCulture);
            Assert.Equal(grid.Left + first % grid.Columns * grid.CellPx, I("x"));
            Assert.Equal(grid.Top + first / grid.Columns * grid.CellPx, I("y"));
            Assert.Equal((last - first + 1) * grid.CellPx, I("width"));
            Assert.Equal(grid.CellPx, I("height"));
            runs.Add(new Run(kind, depth, offset, length));
            next = offset + length;
        }
        Assert.Equal(Math.Max(grid.Start, grid.End), next);
        return runs;
    }

    /// <summary>The documented rule, from qemu-img's extents: data if any (of the layer with most of it, ties shallower), else zeros likewise, else unallocated.</summary>
    private static (string Kind, int? Depth)[] ExpectedCellKinds(List<Run> runs, Grid grid, int cellCount)
    {
        var result = new (string Kind, int? Depth)[cellCount];
        var order = new[] { "data", "zero", "unallocated" };
        for (int cell = 0; cell < cellCount; cell++)
        {
            long cellStart = grid.Origin + cell * grid.CellBytes;
            long cellEnd = cellStart + grid.CellBytes;
            var bytes = new Dictionary<(string, int?), long>();
            foreach (var run in runs.Where(r => r.Offset < cellEnd && r.End > cellStart))
            {
                var key = (run.Kind, run.Depth);
                bytes[key] = bytes.GetValueOrDefault(key) + Math.Min(cellEnd, run.End) - Math.Max(cellStart, run.Offset);
            }
            result[cell] = bytes.OrderBy(p => Array.IndexOf(order, p.Key.Item1)).ThenByDescending(p => p.Value).ThenBy(p => p.Key.Item2).First().Key;
        }
        return result;
    }

    private static void CheckTotals(XDocument svg, List<Run> expected)
    {
        var totals = svg.Descendants(s_svg + "text").Where(t => (string?)t.Attribute("class") == "total")
            .ToDictionary(t => (t.Attribute("data-kind")!.Value, t.Attribute("data-depth") is { } d ? int.Parse(d.Value, CultureInfo.InvariantCulture) : (int?)null),
                t => long.Parse(t.Attribute("data-bytes")!.Value, CultureInfo.InvariantCulture));
        var want = expected.GroupBy(r => (r.Kind, r.Depth)).ToDictionary(g => g.Key, g => g.Sum(r => r.Length));
        Assert.Equal(want.OrderBy(p => p.Key.ToString()), totals.OrderBy(p => p.Key.ToString()));
        long mapped = expected.Sum(r => r.Length);
        var mappedText = svg.Descendants(s_svg + "text").Single(t => (string?)t.Attribute("class") == "mapped");
        Assert.Equal(mapped, long.Parse(mappedText.Attribute("data-bytes")!.Value, CultureInfo.InvariantCulture));
        foreach (var text in svg.Descendants(s_svg + "text").Where(t => (string?)t.Attribute("class") == "total"))
        {
            long bytes = long.Parse(text.Attribute("data-bytes")!.Value, CultureInfo.InvariantCulture);
            Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"({bytes} bytes, {100.0 * bytes / mapped:0.00}%)"), text.Value, StringComparison.Ordinal);
        }
    }

    private static void CheckBoundaries(XDocument svg, Grid grid, long? l2Span, int strideExpected)
    {
        var lines = svg.Descendants(s_svg + "line").Where(l => (string?)l.Attribute("class") == "l2").ToList();
        var offsets = lines.Select(l => long.Parse(l.Attribute("data-offset")!.Value, CultureInfo.InvariantCulture)).ToList();
        var want = new List<long>();
        if (l2Span is { } span)
        {
            long step = span * strideExpected;
            for (long offset = (grid.Start / step + 1) * step; offset < grid.End; offset += step)
            {
                want.Add(offset);
            }
        }
        Assert.Equal(want, offsets);
        foreach (var line in lines)
        {
            long offset = long.Parse(line.Attribute("data-offset")!.Value, CultureInfo.InvariantCulture);
            long index = (offset - grid.Origin) / grid.CellBytes;
            Assert.Equal(0, (offset - grid.Origin) % grid.CellBytes);
            Assert.Equal((grid.Left + index % grid.Columns * grid.CellPx).ToString(CultureInfo.InvariantCulture), line.Attribute("x1")!.Value);
            Assert.Equal(line.Attribute("x1")!.Value, line.Attribute("x2")!.Value);
        }
        var legend = svg.Descendants(s_svg + "text").SingleOrDefault(t => (string?)t.Attribute("class") == "l2-legend");
        Assert.Equal(want.Count > 0, legend is not null);
        if (legend is not null)
        {
            Assert.Equal(strideExpected.ToString(CultureInfo.InvariantCulture), legend.Attribute("data-stride")!.Value);
        }
    }

    private static void CheckLegend(XDocument svg, List<Run> expected)
    {
        var legend = svg.Descendants(s_svg + "g").Single(g => (string?)g.Attribute("id") == "legend");
        int kinds = expected.Select(r => (r.Kind, r.Depth)).Distinct().Count();
        Assert.Equal(kinds, legend.Elements(s_svg + "rect").Count(r => (string?)r.Attribute("class") == "swatch"));
        // Each kind's swatch has the colour its cells have.
        var colours = svg.Descendants(s_svg + "rect").Where(r => (string?)r.Attribute("class") == "cell")
            .GroupBy(r => (r.Attribute("data-kind")!.Value, (string?)r.Attribute("data-depth"))).ToDictionary(g => g.Key, g => g.Select(r => r.Attribute("fill")!.Value).Distinct().Single());
        var swatches = legend.Elements(s_svg + "rect").Zip(legend.Elements(s_svg + "text").Where(t => (string?)t.Attribute("class") == "total"));
        foreach (var (swatch, text) in swatches)
        {
            if (colours.TryGetValue((text.Attribute("data-kind")!.Value, (string?)text.Attribute("data-depth")), out string? fill))
            {
                Assert.Equal(fill, swatch.Attribute("fill")!.Value);
            }
        }
        Assert.Equal(colours.Count, colours.Values.Distinct().Count());
    }
}
