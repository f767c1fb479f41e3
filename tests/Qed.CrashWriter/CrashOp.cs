namespace Qed.CrashWriter;

/// <summary>One step of a crash run: a write of deterministic bytes, a write-zeroes, or a flush.</summary>
/// <param name="Kind">What the step does.</param>
/// <param name="Offset">Guest offset (writes only).</param>
/// <param name="Length">Bytes (writes only).</param>
/// <param name="Fill">Seed of the bytes written (writes only).</param>
public readonly record struct CrashOp(CrashOpKind Kind, long Offset, int Length, int Fill)
{
    /// <summary>The bytes a write of this step stores: a cheap deterministic function of the seed and the position, so a verifier can recompute them.</summary>
    public void FillBuffer(Span<byte> buffer)
    {
        uint state = (uint)Fill * 2654435761u + 1;
        for (int i = 0; i < buffer.Length; i++)
        {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            buffer[i] = (byte)state;
        }
    }
}
