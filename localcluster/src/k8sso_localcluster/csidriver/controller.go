package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultCapacity is a volume's size when the request names none (directories are not size-limited).
const DefaultCapacity int64 = 1 << 30

// NodeAccessParameter is the StorageClass parameter that narrows a class to single-node access modes.
const NodeAccessParameter = "nodeAccess"

// Controller is the CSI controller service over a Store.
type Controller struct {
	csi.UnimplementedControllerServer
	Store *Store
}

func (c *Controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// checkCapabilities refuses block volumes and, for single-node classes, multi-node access modes.
func checkCapabilities(caps []*csi.VolumeCapability, params map[string]string) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	access := params[NodeAccessParameter]
	if access != "" && access != "single" && access != "multi" {
		return status.Errorf(codes.InvalidArgument, "parameter %s=%q: must be single or multi", NodeAccessParameter, access)
	}
	for _, cap := range caps {
		if cap.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported: volumes are directories")
		}
		if cap.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "access type mount is required")
		}
		mode := cap.GetAccessMode().GetMode()
		if mode == csi.VolumeCapability_AccessMode_UNKNOWN {
			return status.Error(codes.InvalidArgument, "access mode is required")
		}
		if access == "single" && strings.HasPrefix(mode.String(), "MULTI_NODE") {
			return status.Errorf(codes.InvalidArgument,
				"access mode %s is not supported: this storage class gives single-node volumes only (%s=single)",
				mode, NodeAccessParameter)
		}
	}
	return nil
}

func capacity(r *csi.CapacityRange) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return 0, status.Errorf(codes.OutOfRange, "invalid capacity range: required %d, limit %d", required, limit)
	}
	switch {
	case required > 0:
		return required, nil
	case limit > 0 && limit < DefaultCapacity:
		return limit, nil
	}
	return DefaultCapacity, nil
}

func storeError(err error, what string) error {
	if errors.Is(err, ErrNotFound) {
		return status.Errorf(codes.NotFound, "%s not found", what)
	}
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

func (c *Controller) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities(), req.GetParameters()); err != nil {
		return nil, err
	}
	size, err := capacity(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	c.Store.mu.Lock()
	defer c.Store.mu.Unlock()
	vol := &Volume{ID: IDFor("vol-", req.GetName()), Name: req.GetName(), CapacityBytes: size,
		Parameters: req.GetParameters(), Topology: accessible(req.GetAccessibilityRequirements())}
	fill, err := c.source(req.GetVolumeContentSource(), vol)
	if err != nil {
		return nil, err
	}
	if old, err := c.Store.GetVolume(vol.ID); err == nil {
		if old.CapacityBytes != size || old.SourceSnap != vol.SourceSnap || old.SourceVolume != vol.SourceVolume {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with a different size or source", req.GetName())
		}
		return &csi.CreateVolumeResponse{Volume: csiVolume(old, req.GetVolumeContentSource())}, nil
	}
	if err := c.Store.PutVolume(vol, fill); err != nil {
		return nil, status.Errorf(codes.Internal, "create volume: %v", err)
	}
	return &csi.CreateVolumeResponse{Volume: csiVolume(vol, req.GetVolumeContentSource())}, nil
}

// source resolves a snapshot or volume to copy from; it returns the directory to copy.
func (c *Controller) source(src *csi.VolumeContentSource, vol *Volume) (string, error) {
	if snapID := src.GetSnapshot().GetSnapshotId(); snapID != "" {
		snap, err := c.Store.GetSnapshot(snapID)
		if err != nil {
			return "", storeError(err, fmt.Sprintf("snapshot %q", snapID))
		}
		if snap.SizeBytes > vol.CapacityBytes {
			return "", status.Errorf(codes.OutOfRange, "snapshot %q needs %d bytes, volume asks %d", snapID, snap.SizeBytes, vol.CapacityBytes)
		}
		vol.SourceSnap = snapID
		return c.Store.SnapshotData(snapID), nil
	}
	if volID := src.GetVolume().GetVolumeId(); volID != "" {
		other, err := c.Store.GetVolume(volID)
		if err != nil {
			return "", storeError(err, fmt.Sprintf("volume %q", volID))
		}
		if other.CapacityBytes > vol.CapacityBytes {
			return "", status.Errorf(codes.OutOfRange, "volume %q has %d bytes, clone asks %d", volID, other.CapacityBytes, vol.CapacityBytes)
		}
		vol.SourceVolume = volID
		return c.Store.VolumeData(volID), nil
	}
	return "", nil
}

// accessible: the directories are on this machine, so a volume is reachable from every node offered.
func accessible(req *csi.TopologyRequirement) []map[string]string {
	var out []map[string]string
	seen := map[string]bool{}
	for _, t := range append(req.GetPreferred(), req.GetRequisite()...) {
		key := t.GetSegments()[TopologyKey]
		if key != "" && !seen[key] {
			seen[key] = true
			out = append(out, map[string]string{TopologyKey: key})
		}
	}
	return out
}

func csiVolume(v *Volume, src *csi.VolumeContentSource) *csi.Volume {
	var topology []*csi.Topology
	for _, segments := range v.Topology {
		topology = append(topology, &csi.Topology{Segments: segments})
	}
	return &csi.Volume{VolumeId: v.ID, CapacityBytes: v.CapacityBytes, ContentSource: src, AccessibleTopology: topology}
}

func (c *Controller) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	c.Store.mu.Lock()
	defer c.Store.mu.Unlock()
	if err := c.Store.DeleteVolume(req.GetVolumeId()); err != nil {
		return nil, status.Errorf(codes.Internal, "delete volume: %v", err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (c *Controller) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	vol, err := c.Store.GetVolume(req.GetVolumeId())
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("volume %q", req.GetVolumeId()))
	}
	if err := checkCapabilities(req.GetVolumeCapabilities(), vol.Parameters); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters()}}, nil
}

func (c *Controller) ControllerExpandVolume(_ context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	size, err := capacity(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	c.Store.mu.Lock()
	defer c.Store.mu.Unlock()
	vol, err := c.Store.GetVolume(req.GetVolumeId())
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("volume %q", req.GetVolumeId()))
	}
	if size > vol.CapacityBytes { // never shrink: a smaller request is already satisfied
		vol.CapacityBytes = size
		if err := c.Store.UpdateVolume(vol); err != nil {
			return nil, status.Errorf(codes.Internal, "expand volume: %v", err)
		}
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: vol.CapacityBytes, NodeExpansionRequired: false}, nil
}
