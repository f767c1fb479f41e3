namespace Qed.Cli.Commands.Bench;

/// <summary>What one <c>qed bench</c> run does (the meaning of qemu-img bench's options).</summary>
internal sealed record BenchSettings
{
    /// <summary>Requests to send in total (<c>-c</c>).</summary>
    public int Count { get; init; } = 75000;

    /// <summary>Requests kept in flight at once (<c>-d</c>).</summary>
    public int Depth { get; init; } = 64;

    /// <summary>Offset of the first request (<c>-o</c>).</summary>
    public long Offset { get; init; }

    /// <summary>Bytes per request (<c>-s</c>).</summary>
    public int Size { get; init; } = 4096;

    /// <summary>Distance between the offsets of consecutive requests (<c>-S</c>; the request size when not given).</summary>
    public int Step { get; init; } = 4096;

    /// <summary>Write instead of read (<c>-w</c>).</summary>
    public bool Write { get; init; }

    /// <summary>The byte every write buffer is filled with (<c>--pattern</c>).</summary>
    public byte Pattern { get; init; }

    /// <summary>Flush whenever the number of requests not yet sent is a multiple of this; 0 never (<c>--flush-interval</c>).</summary>
    public int FlushInterval { get; init; }

    /// <summary>Wait for the requests in flight to complete before each flush, and send nothing new until it is done (unless <c>--no-drain</c>).</summary>
    public bool DrainOnFlush { get; init; } = true;

    /// <summary>The line qemu-img bench prints before it starts.</summary>
    public string Describe() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Sending {Count} {(Write ? "write" : "read")} requests, {Size} bytes each, {Depth} in parallel (starting at offset {Offset}, step size {Step})");
}
