using Qed.IO;

namespace Qed.Nbd.Server;

/// <summary>What an NBD server offers under one name: a device and how clients may use it.</summary>
public sealed record NbdExport
{
    /// <summary>An export of <paramref name="device"/> under <paramref name="name"/> (qemu-nbd's <c>-x</c>; the empty name is the default export).</summary>
    public NbdExport(string name, BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(device);
        Name = name;
        Device = device;
    }

    /// <summary>The export's name; clients that ask for the empty name get the first export.</summary>
    public string Name { get; }

    /// <summary>The device served. The server never disposes it.</summary>
    public BlockDevice Device { get; }

    /// <summary>Human-readable text sent with <c>NBD_INFO_DESCRIPTION</c> and <c>LIST</c> (qemu-nbd's <c>-D</c>), or null.</summary>
    public string? Description { get; init; }

    /// <summary>Refuse writes (EPERM) and advertise the export as read-only; also true when the device itself is read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>What TRIM does (qemu-nbd's <c>--discard</c>): nothing (the default), or free the space.</summary>
    public NbdDiscardMode Discard { get; init; } = NbdDiscardMode.Ignore;

    /// <summary>Offer the <c>qemu:allocation-depth</c> metadata context (qemu-nbd's <c>-A</c>).</summary>
    public bool AllocationDepth { get; init; }

    /// <summary>True when writes are refused, by choice or because the device cannot write.</summary>
    public bool IsReadOnly => ReadOnly || Device.IsReadOnly || (Device.Capabilities & BlockDeviceCapabilities.Write) == 0;
}

/// <summary>What NBD_CMD_TRIM does on an export.</summary>
public enum NbdDiscardMode
{
    /// <summary>TRIM is accepted and does nothing (qemu-nbd's <c>--discard=ignore</c>, its default).</summary>
    Ignore,

    /// <summary>TRIM frees the space where the device can (qemu-nbd's <c>--discard=unmap</c>).</summary>
    Unmap,
}
