using Qed.IO;

namespace Qed.Cli.Commands.Map;

/// <summary>What a cell of the picture shows: data or zeros answered by the layer at <see cref="Depth"/>, or unallocated (depth 0 then: where an unallocated range fell through is not drawn).</summary>
internal readonly record struct CellKind(BlockState State, int Depth) : IComparable<CellKind>
{
    /// <summary>The one unallocated kind.</summary>
    public static CellKind Unallocated => new(BlockState.Unallocated, 0);

    /// <summary>The kind of an extent of the map.</summary>
    public static CellKind Of(BlockState state, int depth) => state == BlockState.Unallocated ? Unallocated : new(state, depth);

    /// <summary>The name in the picture's attributes and legend: <c>data</c>, <c>zero</c> or <c>unallocated</c>.</summary>
    public string Name => State switch
    {
        BlockState.Data => "data",
        BlockState.Zero => "zero",
        _ => "unallocated",
    };

    /// <summary>Data before zeros before unallocated, shallower layers first: the legend's order.</summary>
    public int CompareTo(CellKind other) => State != other.State ? State.CompareTo(other.State) : Depth.CompareTo(other.Depth);
}

/// <summary>
/// The cells of the picture: the mapped range cut on a grid of <see cref="CellBytes"/>-byte cells aligned to the disk
/// (a cell is one cluster, or a power of two of them when the image has more clusters than <see cref="MaxCells"/>).
/// </summary>
/// <remarks>
/// 1. Extents arrive in disk order (<see cref="Add"/>). Each cell adds up the bytes of each kind that fall in it; whole
///    cells covered by one extent are filled at once, so the work is bounded by the number of extents plus cells.
/// 2. A cell that mixes kinds shows the most telling one, so a little data in a large sparse cell stays visible: data if
///    it holds any (of the layer holding the most of it, ties to the shallower layer), else zeros (likewise), else
///    unallocated. At one cluster per cell the extents of a cluster-granular map fill whole cells, so the cells show
///    the extents exactly.
/// 3. The first and last cells are clipped to the mapped range, so their byte ranges are exact too.
/// </remarks>
internal sealed class CellGrid
{
    /// <summary>The most cells a picture holds (256 × 256): beyond, cells stand for several clusters.</summary>
    public const int MaxCells = 256 * 256;

    private readonly CellKind[] _cells;
    private readonly List<(CellKind Kind, long Bytes)> _parts = [];
    private long _partIndex = -1;

    /// <summary>Lays out the cells for <c>[start, end)</c> with cells of at least <paramref name="unit"/> bytes (a power of two).</summary>
    public CellGrid(long start, long end, long unit)
    {
        Start = start;
        End = end;
        long cellBytes = unit;
        while (CountCells(start, end, cellBytes) > MaxCells)
        {
            cellBytes *= 2;
        }
        CellBytes = cellBytes;
        Origin = start - start % cellBytes;
        _cells = new CellKind[CountCells(start, end, cellBytes)];
        _cells.AsSpan().Fill(CellKind.Unallocated);
        UnitsPerCell = cellBytes / unit;
    }

    /// <summary>First byte mapped.</summary>
    public long Start { get; }

    /// <summary>First byte after the mapped range.</summary>
    public long End { get; }

    /// <summary>Bytes of disk one cell stands for.</summary>
    public long CellBytes { get; }

    /// <summary>Clusters (or raw granules) one cell stands for.</summary>
    public long UnitsPerCell { get; }

    /// <summary>Disk offset of cell 0's grid position (its range starts at <see cref="Start"/>).</summary>
    public long Origin { get; }

    /// <summary>Number of cells.</summary>
    public int Count => _cells.Length;

    /// <summary>The kind of cell <paramref name="index"/> (after <see cref="Complete"/>).</summary>
    public CellKind this[int index] => _cells[index];

    /// <summary>First byte of cell <paramref name="index"/>, clipped to the mapped range.</summary>
    public long CellStart(int index) => Math.Max(Start, Origin + index * CellBytes);

    /// <summary>First byte after cell <paramref name="index"/>, clipped to the mapped range.</summary>
    public long CellEnd(int index) => Math.Min(End, Origin + (index + 1) * CellBytes);

    /// <summary>Adds an extent; extents must come in disk order.</summary>
    public void Add(long offset, long length, CellKind kind)
    {
        long end = offset + length;
        while (offset < end)
        {
            int index = (int)((offset - Origin) / CellBytes);
            long cellEnd = CellEnd(index);
            if (offset == CellStart(index) && end >= cellEnd)
            {
                // Whole cells: nothing to weigh. The last one whose end the extent reaches:
                Flush();
                int last = end >= End ? _cells.Length - 1 : (int)((end - Origin) / CellBytes) - 1;
                _cells.AsSpan(index, last - index + 1).Fill(kind);
                offset = CellEnd(last);
                continue;
            }
            if (index != _partIndex)
            {
                Flush();
                _partIndex = index;
            }
            long piece = Math.Min(end, cellEnd) - offset;
            int found = _parts.FindIndex(p => p.Kind == kind);
            if (found < 0)
            {
                _parts.Add((kind, piece));
            }
            else
            {
                _parts[found] = (kind, _parts[found].Bytes + piece);
            }
            offset += piece;
        }
    }

    /// <summary>Settles the last mixed cell.</summary>
    public void Complete() => Flush();

    private void Flush()
    {
        if (_partIndex < 0)
        {
            return;
        }
        var best = _parts[0];
        foreach (var part in _parts)
        {
            if (Outranks(part, best))
            {
                best = part;
            }
        }
        _cells[_partIndex] = best.Kind;
        _parts.Clear();
        _partIndex = -1;
    }

    /// <summary>The order of <see cref="Flush"/>: a state before a later one (data, zero, unallocated), then more bytes, then the shallower layer.</summary>
    internal static bool Outranks((CellKind Kind, long Bytes) a, (CellKind Kind, long Bytes) b) =>
        a.Kind.State != b.Kind.State ? a.Kind.State < b.Kind.State
        : a.Bytes != b.Bytes ? a.Bytes > b.Bytes
        : a.Kind.Depth < b.Kind.Depth;

    private static long CountCells(long start, long end, long cellBytes) =>
        end <= start ? 0 : (end - 1) / cellBytes - start / cellBytes + 1;
}
