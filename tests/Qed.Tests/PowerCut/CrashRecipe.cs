namespace Qed.Tests.PowerCut;

/// <summary>Which sectors of one logged write reached the disk: all of them, or those marked in <see cref="Sectors"/> (a torn write).</summary>
/// <param name="OpIndex">Index of the write in the log.</param>
/// <param name="Sectors">One flag per 512-byte file sector the write touches, or null for the whole write.</param>
internal readonly record struct PersistedWrite(int OpIndex, bool[]? Sectors);

/// <summary>How to rebuild one crash state from a session's log (see <see cref="CrashStateGenerator"/> for the model).</summary>
internal sealed record CrashRecipe
{
    /// <summary>"prefix", "torn" (a prefix and part of the next write) or "reordered" (a subset of one flush epoch in any order).</summary>
    public required string Kind { get; init; }

    /// <summary>Operations <c>[0, InOrder)</c> applied exactly in order.</summary>
    public required int InOrder { get; init; }

    /// <summary>Writes that reached the disk after those, applied in this order.</summary>
    public required IReadOnlyList<PersistedWrite> Writes { get; init; }

    /// <summary>Length changes among the later operations that reached the disk (log indices), in log order.</summary>
    public required IReadOnlyList<int> Truncates { get; init; }

    /// <summary>The file length the crash left.</summary>
    public required long Length { get; init; }

    /// <summary>Operations <c>[0, Durable)</c> are certainly on disk: a guest request whose operations all lie there must read back exactly.</summary>
    public required int Durable { get; init; }

    /// <summary>No operation at or after this index reached the disk: guest requests starting there cannot show.</summary>
    public required int Visible { get; init; }

    public override string ToString()
    {
        string writes = Writes.Count == 0 ? "" : $" + writes [{string.Join(", ", Writes.Select(w => w.Sectors is null ? $"{w.OpIndex}" : $"{w.OpIndex}(torn {w.Sectors.Count(s => s)}/{w.Sectors.Length})"))}]";
        string truncates = Truncates.Count == 0 ? "" : $" + set-length [{string.Join(", ", Truncates)}]";
        return $"{Kind}: ops [0, {InOrder}) in order{writes}{truncates}, length 0x{Length:x} (durable {Durable}, visible {Visible})";
    }
}
