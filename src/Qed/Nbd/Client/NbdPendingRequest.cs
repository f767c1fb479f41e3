using Qed.Nbd.Protocol;

namespace Qed.Nbd.Client;

/// <summary>
/// One request in flight: what was asked (so that every reply can be checked against it) and where its answer goes.
/// Only the reply reader touches the reply state; the caller waits on <see cref="Completion"/>.
/// </summary>
internal sealed class NbdPendingRequest(ushort command, ulong offset, uint length, Memory<byte> destination)
{
    public ushort Command { get; } = command;

    public ulong Offset { get; } = offset;

    public uint Length { get; } = length;

    /// <summary>Where READ data goes: exactly <see cref="Length"/> bytes.</summary>
    public Memory<byte> Destination { get; } = destination;

    /// <summary>Completes when the reply is complete; runs continuations off the reader.</summary>
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True once a structured chunk arrived for this cookie (a simple reply may then not follow).</summary>
    public bool SawChunk { get; set; }

    /// <summary>The first error chunk's error.</summary>
    public NbdException? Error { get; set; }

    /// <summary>What the READ's chunks filled so far.</summary>
    public NbdReadCoverage Coverage => _coverage ??= new NbdReadCoverage();

    /// <summary>The BLOCK_STATUS chunk's extents, once received.</summary>
    public NbdExtent[]? Extents { get; set; }

    private NbdReadCoverage? _coverage;

    /// <summary>What a message calls the request: <c>READ of 4096 bytes at 0</c>.</summary>
    public string Describe() => Command is NbdCommand.Flush ? "FLUSH" : $"{NbdErrors.Command(Command)} of {Length} bytes at {Offset}";
}
