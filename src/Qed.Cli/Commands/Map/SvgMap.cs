using System.Globalization;
using System.Text;
using System.Xml;
using Qed.Cli.Output;
using Qed.Extents;
using Qed.Formats;
using Qed.IO;

namespace Qed.Cli.Commands.Map;

/// <summary>
/// <c>qed map --output=svg</c>: the extent map drawn as a picture, for looking at allocation and fragmentation rather
/// than reading thousands of JSON lines.
/// </summary>
/// <remarks>
/// The mapped range is cut into cells of one cluster each (4 KiB for raw images), or of a power of two of clusters when
/// there are more than <see cref="CellGrid.MaxCells"/>, laid out in rows left to right; the title says the scale. Each run
/// of cells of one kind on a row is one <c>rect</c> (class <c>cell</c>) with its exact byte range and kind as attributes
/// (<c>data-offset</c>, <c>data-length</c>, <c>data-kind</c>, <c>data-depth</c>), so a long run wraps over rows and the
/// element count is bounded by the cells, never by the disk size. L2 table boundaries of the image itself are vertical
/// lines (class <c>l2</c>, <c>data-offset</c>), thinned to every 2nd, 4th, ... when they would be closer than one cell
/// or more than <see cref="MaxBoundaryLines"/>. The legend lists each kind present with its total bytes and share of
/// the range (class <c>total</c>, <c>data-bytes</c>); totals come from the extents, not the rounded cells.
/// </remarks>
internal static class SvgMap
{
    /// <summary>Cell granule of formats without clusters (raw files report holes at file-system block size).</summary>
    private const long RawGranule = 4096;

    /// <summary>The most L2 boundary lines drawn.</summary>
    internal const int MaxBoundaryLines = 4096;

    private const int Margin = 16;
    private const int TitleHeight = 100;
    private const int LegendLine = 20;

    private static readonly string[] s_dataColors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
    private const string UnallocatedColor = "#eeeeee";
    private const string BoundaryColor = "#d62728";

    /// <summary>Writes the picture of <c>[start, end)</c> of <paramref name="device"/>, named <paramref name="displayName"/>.</summary>
    public static void Write(TextWriter output, BlockDevice device, string displayName, long start, long end)
    {
        var format = ImageFormats.Find(device.FormatName);
        var description = format?.Describe(device);
        long? l2Span = format?.GetL2TableSpan(device);
        long unit = description?.ClusterSize ?? RawGranule;
        var grid = new CellGrid(start, end, unit);
        var totals = new SortedDictionary<CellKind, long>();
        if (start < end)
        {
            foreach (var extent in ExtentMap.Enumerate(device, start, end - start))
            {
                var kind = CellKind.Of(extent.State, extent.Depth);
                grid.Add(extent.Offset, extent.Length, kind);
                totals[kind] = totals.GetValueOrDefault(kind) + extent.Length;
            }
        }
        grid.Complete();

        var layers = new List<string>();
        for (var layer = device; layer is not null; layer = layer.Backing)
        {
            layers.Add(layer == device ? displayName : layer.FileName);
        }

        int columns = Columns(grid.Count);
        int cellPx = columns <= 32 ? 16 : columns <= 64 ? 10 : columns <= 128 ? 6 : 4;
        int rows = (grid.Count + columns - 1) / columns;
        int gridTop = Margin + TitleHeight;
        int gridHeight = rows * cellPx;
        var boundaries = Boundaries(l2Span, grid, out long boundaryStride);
        int legendTop = gridTop + gridHeight + 28;
        int legendLines = totals.Count + 1 + (boundaries.Count > 0 ? 1 : 0);
        int width = Math.Max(columns * cellPx + 2 * Margin, 720);
        int height = legendTop + legendLines * LegendLine + Margin;

        output.Write("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        var settings = new XmlWriterSettings { OmitXmlDeclaration = true, Indent = true, IndentChars = " ", NewLineChars = "\n", CloseOutput = false };
        using (var xml = XmlWriter.Create(output, settings))
        {
            const string ns = "http://www.w3.org/2000/svg";
            xml.WriteStartElement("svg", ns);
            Attr(xml, "width", width);
            Attr(xml, "height", height);
            xml.WriteAttributeString("viewBox", Invariant($"0 0 {width} {height}"));
            xml.WriteAttributeString("font-family", "sans-serif");
            xml.WriteAttributeString("font-size", "12");
            Attr(xml, "data-start", start);
            Attr(xml, "data-end", end);
            Attr(xml, "data-cell-bytes", grid.CellBytes);
            Attr(xml, "data-origin", grid.Origin);
            Attr(xml, "data-columns", columns);
            Attr(xml, "data-cell-px", cellPx);
            Attr(xml, "data-grid-top", gridTop);
            Attr(xml, "data-grid-left", Margin);

            string name = XmlSafe(displayName);
            xml.WriteElementString("title", ns, $"qed map: {name}");
            WriteTitle(xml, ns, name, description, device.Size, grid, unit, columns, start, end);

            xml.WriteStartElement("g", ns);
            xml.WriteAttributeString("id", "cells");
            xml.WriteAttributeString("shape-rendering", "crispEdges");
            for (int index = 0; index < grid.Count;)
            {
                int row = index / columns;
                int runEnd = index + 1;
                while (runEnd < grid.Count && runEnd / columns == row && grid[runEnd] == grid[index])
                {
                    runEnd++;
                }
                var kind = grid[index];
                xml.WriteStartElement("rect", ns);
                xml.WriteAttributeString("class", "cell");
                Attr(xml, "x", Margin + index % columns * cellPx);
                Attr(xml, "y", gridTop + row * cellPx);
                Attr(xml, "width", (runEnd - index) * cellPx);
                Attr(xml, "height", cellPx);
                xml.WriteAttributeString("fill", Color(kind));
                xml.WriteAttributeString("data-kind", kind.Name);
                if (kind.State != BlockState.Unallocated)
                {
                    Attr(xml, "data-depth", kind.Depth);
                }
                Attr(xml, "data-offset", grid.CellStart(index));
                Attr(xml, "data-length", grid.CellEnd(runEnd - 1) - grid.CellStart(index));
                xml.WriteEndElement();
                index = runEnd;
            }
            xml.WriteEndElement();

            xml.WriteStartElement("g", ns);
            xml.WriteAttributeString("id", "l2-boundaries");
            xml.WriteAttributeString("stroke", BoundaryColor);
            xml.WriteAttributeString("stroke-width", "2");
            foreach (long offset in boundaries)
            {
                int index = (int)((offset - grid.Origin) / grid.CellBytes);
                int x = Margin + index % columns * cellPx;
                int y = gridTop + index / columns * cellPx;
                xml.WriteStartElement("line", ns);
                xml.WriteAttributeString("class", "l2");
                Attr(xml, "x1", x);
                Attr(xml, "x2", x);
                Attr(xml, "y1", y - 2);
                Attr(xml, "y2", y + cellPx + 2);
                Attr(xml, "data-offset", offset);
                xml.WriteEndElement();
            }
            xml.WriteEndElement();

            WriteLegend(xml, ns, legendTop, totals, layers, end - start, boundaries.Count > 0 ? boundaryStride : 0, l2Span);
            xml.WriteEndElement();
        }
        output.Write('\n');
    }

    private static void WriteTitle(XmlWriter xml, string ns, string name, ImageDescription? description, long size, CellGrid grid, long unit, int columns, long start, long end)
    {
        string cluster = description?.ClusterSize is { } clusterSize
            ? Invariant($"cluster size {clusterSize}")
            : Invariant($"no clusters (cells of {RawGranule}-byte blocks)");
        string what = description?.ClusterSize is null ? "block" : "cluster";
        string scale = grid.UnitsPerCell == 1
            ? $"one cell = one {what} ({grid.CellBytes} bytes)"
            : Invariant($"one cell = {grid.UnitsPerCell} {what}s ({grid.CellBytes} bytes): data if any of it holds data, else zeros if any reads as zeros");
        string range = start == 0 && end == size ? "the whole disk" : Invariant($"bytes {start} to {end}");
        string[] lines =
        [
            $"qed map: {name}",
            Invariant($"virtual size {SizeFormatter.Format((ulong)(description?.VirtualSize ?? size))} ({description?.VirtualSize ?? size} bytes), {cluster}"),
            Invariant($"{range}, {columns} cells per row"),
            scale,
        ];
        xml.WriteStartElement("g", ns);
        xml.WriteAttributeString("id", "title");
        for (int i = 0; i < lines.Length; i++)
        {
            xml.WriteStartElement("text", ns);
            Attr(xml, "x", Margin);
            Attr(xml, "y", Margin + 16 + i * 22);
            if (i == 0)
            {
                xml.WriteAttributeString("font-size", "16");
                xml.WriteAttributeString("font-weight", "bold");
            }
            xml.WriteString(lines[i]);
            xml.WriteEndElement();
        }
        xml.WriteEndElement();
    }

    private static void WriteLegend(XmlWriter xml, string ns, int top, SortedDictionary<CellKind, long> totals, List<string> layers, long mapped, long boundaryStride, long? l2Span)
    {
        xml.WriteStartElement("g", ns);
        xml.WriteAttributeString("id", "legend");
        int y = top;
        foreach (var (kind, bytes) in totals)
        {
            xml.WriteStartElement("rect", ns);
            xml.WriteAttributeString("class", "swatch");
            Attr(xml, "x", Margin);
            Attr(xml, "y", y - 11);
            Attr(xml, "width", 12);
            Attr(xml, "height", 12);
            xml.WriteAttributeString("fill", Color(kind));
            xml.WriteAttributeString("stroke", "#999999");
            xml.WriteEndElement();

            string label = kind.State == BlockState.Unallocated
                ? "unallocated (reads as zeros, no layer holds it)"
                : Invariant($"{kind.Name}, depth {kind.Depth} ({XmlSafe(kind.Depth < layers.Count ? layers[kind.Depth] : "?")})");
            double percent = mapped == 0 ? 0 : 100.0 * bytes / mapped;
            xml.WriteStartElement("text", ns);
            xml.WriteAttributeString("class", "total");
            xml.WriteAttributeString("data-kind", kind.Name);
            if (kind.State != BlockState.Unallocated)
            {
                Attr(xml, "data-depth", kind.Depth);
            }
            Attr(xml, "data-bytes", bytes);
            Attr(xml, "x", Margin + 20);
            Attr(xml, "y", y);
            xml.WriteString(Invariant($"{label}: {SizeFormatter.Format((ulong)bytes)} ({bytes} bytes, {percent:0.00}%)"));
            xml.WriteEndElement();
            y += LegendLine;
        }

        xml.WriteStartElement("text", ns);
        xml.WriteAttributeString("class", "mapped");
        Attr(xml, "data-bytes", mapped);
        Attr(xml, "x", Margin);
        Attr(xml, "y", y);
        xml.WriteString(Invariant($"mapped: {SizeFormatter.Format((ulong)mapped)} ({mapped} bytes)"));
        xml.WriteEndElement();
        y += LegendLine;

        if (boundaryStride > 0)
        {
            xml.WriteStartElement("line", ns);
            Attr(xml, "x1", Margin + 6);
            Attr(xml, "x2", Margin + 6);
            Attr(xml, "y1", y - 12);
            Attr(xml, "y2", y + 2);
            xml.WriteAttributeString("stroke", BoundaryColor);
            xml.WriteAttributeString("stroke-width", "2");
            xml.WriteEndElement();
            xml.WriteStartElement("text", ns);
            xml.WriteAttributeString("class", "l2-legend");
            Attr(xml, "data-stride", boundaryStride);
            Attr(xml, "x", Margin + 20);
            Attr(xml, "y", y);
            string every = boundaryStride == 1 ? "" : Invariant($"; one line per {boundaryStride} tables");
            xml.WriteString(Invariant($"L2 table boundary (each table maps {SizeFormatter.Format((ulong)l2Span!.Value)}{every})"));
            xml.WriteEndElement();
        }
        xml.WriteEndElement();
    }

    /// <summary>Offsets strictly inside the range where an L2 table's span starts, every <paramref name="stride"/>th, thinned so lines are at least a cell apart and few enough.</summary>
    private static List<long> Boundaries(long? l2Span, CellGrid grid, out long stride)
    {
        stride = 1;
        var offsets = new List<long>();
        if (l2Span is not { } span || grid.End <= grid.Start)
        {
            return offsets;
        }
        while (span * stride < grid.CellBytes || (grid.End - 1) / (span * stride) - grid.Start / (span * stride) > MaxBoundaryLines)
        {
            if (span * stride > long.MaxValue / 4)
            {
                return offsets;
            }
            stride *= 2;
        }
        long step = span * stride;
        for (long offset = (grid.Start / step + 1) * step; offset < grid.End; offset += step)
        {
            offsets.Add(offset);
        }
        return offsets;
    }

    /// <summary>Cells per row: a power of two near the square root of the count, between 16 and 256.</summary>
    private static int Columns(int cells)
    {
        int columns = 16;
        while (columns < 256 && (long)columns * columns < cells)
        {
            columns *= 2;
        }
        return columns;
    }

    private static string Color(CellKind kind) => kind.State switch
    {
        BlockState.Data => s_dataColors[kind.Depth % s_dataColors.Length],
        // Zeros known from metadata: the layer's colour, faded.
        BlockState.Zero => Fade(s_dataColors[kind.Depth % s_dataColors.Length]),
        _ => UnallocatedColor,
    };

    private static string Fade(string color)
    {
        int Channel(int i) => 255 - (255 - int.Parse(color.AsSpan(1 + 2 * i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)) * 3 / 10;
        return Invariant($"#{Channel(0):x2}{Channel(1):x2}{Channel(2):x2}");
    }

    /// <summary>A file name as XML text: characters XML 1.0 cannot hold (control characters, lone surrogates) become U+FFFD; the writer escapes the rest.</summary>
    internal static string XmlSafe(string text)
    {
        var safe = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                safe.Append(c).Append(text[++i]);
            }
            else
            {
                safe.Append(XmlConvert.IsXmlChar(c) ? c : '\uFFFD');
            }
        }
        return safe.ToString();
    }

    private static void Attr(XmlWriter xml, string name, long value) => xml.WriteAttributeString(name, value.ToString(CultureInfo.InvariantCulture));

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
