using System.Globalization;
using Qed.IO;

namespace Qed.Tests.Interop;

/// <summary>
/// One guest-visible operation that both writers can replay identically: as a <c>qemu-io</c> command and as a
/// call on our <see cref="BlockDevice"/>. The same list also drives the <see cref="DiskModel"/> that says what
/// the disk must read afterwards.
/// </summary>
internal abstract record GuestOp(long Offset, long Length)
{
    /// <summary>The qemu-io command (one <c>-c</c> argument).</summary>
    public abstract string ToQemuIo();

    /// <summary>Performs the operation with our engine, through the sync or the async API.</summary>
    public abstract ValueTask ApplyAsync(BlockDevice device, bool useAsync);

    /// <summary>Performs the operation on the model.</summary>
    public abstract void ApplyTo(DiskModel model);

    public long End => Offset + Length;
}

/// <summary><c>write -P pattern offset length</c>.</summary>
internal sealed record WriteOp(long Offset, long Length, byte Pattern) : GuestOp(Offset, Length)
{
    public override string ToQemuIo() => string.Create(CultureInfo.InvariantCulture, $"write -P 0x{Pattern:x2} {Offset} {Length}");

    public override async ValueTask ApplyAsync(BlockDevice device, bool useAsync)
    {
        byte[] payload = new byte[Length];
        Array.Fill(payload, Pattern);
        if (useAsync)
        {
            await device.WriteAsync(payload, Offset);
        }
        else
        {
            device.Write(payload, Offset);
        }
    }

    public override void ApplyTo(DiskModel model) => model.Fill(Offset, Length, Pattern);
}

/// <summary><c>write -z offset length</c>.</summary>
internal sealed record ZeroOp(long Offset, long Length) : GuestOp(Offset, Length)
{
    public override string ToQemuIo() => string.Create(CultureInfo.InvariantCulture, $"write -z {Offset} {Length}");

    public override async ValueTask ApplyAsync(BlockDevice device, bool useAsync)
    {
        if (useAsync)
        {
            await device.WriteZeroesAsync(Offset, Length);
        }
        else
        {
            device.WriteZeroes(Offset, Length);
        }
    }

    public override void ApplyTo(DiskModel model) => model.Fill(Offset, Length, 0);
}

/// <summary>Short constructors for recipes, in qemu-io's units.</summary>
internal static class Op
{
    public const long K = 1024;
    public const long M = 1024 * 1024;
    public const long G = 1024 * M;
    public const long T = 1024 * G;

    public static WriteOp W(byte pattern, long offset, long length) => new(offset, length, pattern);

    public static ZeroOp Z(long offset, long length) => new(offset, length);
}
